# asr_sft: common entry points. `make help` lists them.
#
# Everything runs in a project virtual environment, .venv/ (git-ignored), made by `make setup`.
# To use another interpreter or environment instead: make setup PYTHON=/path/to/python (then pass
# the same PYTHON=... to every target).
VENV := .venv
PYTHON ?= $(VENV)/bin/python
# Recipes call `asr-sft` and `python`: they find the environment's first on PATH.
export PATH := $(abspath $(dir $(PYTHON))):$(PATH)
BOOTSTRAP_PYTHON ?= python3
APT_PACKAGES := espeak-ng sctk sox flac python3-venv
EXTRAS := dev,whisper
STAMP := $(dir $(PYTHON)).asr_sft-setup-stamp

.PHONY: help setup lock demo demo-ctc test bench bench-decode bench-whisper bench-gpu clean librispeech-finetune librispeech-whisper accent-adapt

help:
	@echo "make setup   system packages (as root), then .venv/ with the locked Python packages"
	@echo "make demo    the main job: fine-tune real Whisper tiny.en on a synthetic accent (offline, CPU)"
	@echo "make demo-ctc   the same adaptation with the built-in wav2vec2 CTC model"
	@echo "make test    the test suite (offline, CPU)"
	@echo "make bench   the CPU benchmarks under bench/ (prints figures)"
	@echo "make bench-whisper   Whisper tiny.en training on CPU: setups and 30 s vs variable windows"
	@echo "make bench-gpu PYTHON=python3   on a CUDA machine: bench/gpu.py (< 8 min on one H200; needs no setup)"
	@echo "make lock    re-resolve the dependencies in a clean venv, test, and rewrite constraints.txt"
	@echo "make accent-adapt   per-accent adaptation of Whisper tiny.en: the gap, LoRA / full / pooled /"
	@echo "              pseudo-label strategies, routing, forgetting (offline, CPU; ARGS='--smoke' for a check)"
	@echo "make librispeech-finetune   wav2vec2-base CTC on LibriSpeech 100 h, scored on test-clean/other"
	@echo "              (needs internet: 7.3 GB download; and a GPU: an estimated 6-13 h on one H100)"
	@echo "make librispeech-whisper    Whisper (tiny.en, or MODEL=...) seq2seq on LibriSpeech 100 h, + zero-shot"

# Re-runs only when pyproject.toml or constraints.txt change (the stamp lives in the environment,
# so a deleted .venv re-installs).
setup: $(STAMP)

$(STAMP): pyproject.toml constraints.txt
	@if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $(APT_PACKAGES); \
	elif command -v apt-get >/dev/null; then \
		for p in $(APT_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
		if [ -n "$$missing" ]; then echo "not root: install the system packages first:"; \
			echo "  sudo apt-get install -y$$missing"; fi; \
	else \
		echo "no apt-get: install these system packages yourself: $(APT_PACKAGES)"; \
	fi
	@if [ "$(PYTHON)" = "$(VENV)/bin/python" ] && [ ! -x "$(PYTHON)" ]; then \
		echo "creating $(VENV) with $(BOOTSTRAP_PYTHON)"; $(BOOTSTRAP_PYTHON) -m venv $(VENV); fi
	$(PYTHON) -m pip install -q --upgrade pip
	$(PYTHON) -m pip install -q -c constraints.txt -e ".[$(EXTRAS)]"
	$(PYTHON) tools/check_install.py
	touch $@

# A fresh resolution against today's registry, in a throw-away venv: if the tests pass there, its
# exact versions become the new constraints.txt.
lock:
	rm -rf .venv-lock
	$(BOOTSTRAP_PYTHON) -m venv .venv-lock
	.venv-lock/bin/python -m pip install -q --upgrade pip
	.venv-lock/bin/python -m pip install -q -e ".[$(EXTRAS)]"
	.venv-lock/bin/python tools/check_install.py
	.venv-lock/bin/python -m pytest -q -x
	{ sed -n '1,3p' constraints.txt; .venv-lock/bin/python -m pip freeze --exclude-editable | grep -v '^asr_sft'; } > constraints.txt.new
	mv constraints.txt.new constraints.txt
	rm -rf .venv-lock
	@echo "constraints.txt refreshed; review with git diff constraints.txt"

demo: setup
	bash recipes/demo/run.sh

demo-ctc: setup
	bash recipes/demo_ctc/run.sh

test: setup
	$(PYTHON) -m pytest -q

bench: setup
	$(PYTHON) bench/bench_features.py
	$(PYTHON) bench/bench_synth.py
	$(PYTHON) bench/bench_scoring.py
	$(PYTHON) bench/bench_train.py

bench-decode: setup
	$(PYTHON) bench/bench_decode.py

# Whisper tiny.en training on CPU: full / LoRA / frozen encoder throughput, and 30 s vs variable
# windows (the same fine-tune: throughput and held-out WER). About 10 minutes on 2 cores.
bench-whisper: setup
	OMP_NUM_THREADS=2 $(PYTHON) bench/bench_whisper_train.py --steps 5
	OMP_NUM_THREADS=2 $(PYTHON) bench/bench_whisper_windows.py

# The GPU benchmark (training, decoding, features) in one command; it needs only torch, transformers,
# accelerate and numpy, so it runs on a bare GPU image without `make setup`. CPU check: add --smoke.
bench-gpu:
	PYTHONPATH=. $(PYTHON) bench/gpu.py --out bench/results/gpu

# Downloads LibriSpeech and fine-tunes facebook/wav2vec2-base (recipes/librispeech/run.sh); it
# resumes where it stopped. Pass recipe options with ARGS, e.g. ARGS='--override train.max_steps=20'.
librispeech-finetune: setup
	bash recipes/librispeech/run.sh $(ARGS)

# The same recipe fine-tuning Whisper (seq2seq; built-in tiny.en unless MODEL=..., e.g.
# builtin:whisper-base or openai/whisper-small.en), its zero-shot WER measured beside the published one.
librispeech-whisper: setup
	bash recipes/librispeech/run.sh --conf recipes/librispeech/conf/whisper_100h.toml \
	  --exp exp/librispeech_whisper $(if $(MODEL),--model $(MODEL)) $(ARGS)

# Per-accent adaptation recipe (recipes/accent_adaptation/run.sh): settings through the environment
# (STRATEGIES="lora full pooled pseudo", CAPS=20s,1m, MODEL=..., see the script's header).
accent-adapt: setup
	bash recipes/accent_adaptation/run.sh $(ARGS)

clean:
	rm -rf exp/demo exp/demo_ctc data/demo data/demo_ctc
