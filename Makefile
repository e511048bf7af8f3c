# asr_sft: common entry points. `make help` lists them.
PYTHON ?= python3
APT_PACKAGES := espeak-ng sctk sox flac

.PHONY: help setup demo test bench clean librispeech-finetune

help:
	@echo "make setup   install system packages (as root) and the Python package"
	@echo "make demo    the main job on the built-in synthetic corpus (offline, CPU)"
	@echo "make test    the test suite (offline, CPU)"
	@echo "make bench   the benchmarks under bench/ (prints figures)"
	@echo "make librispeech-finetune   wav2vec2-base CTC on LibriSpeech 100 h, scored on test-clean/other"
	@echo "              (needs internet: 7.3 GB download; and a GPU: an estimated 6-13 h on one H100)"

# Re-runs only when pyproject.toml changes (the stamp is git-ignored).
setup: .setup-stamp

.setup-stamp: pyproject.toml
	@if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $(APT_PACKAGES); \
	else \
		echo "not root: install these system packages yourself: $(APT_PACKAGES)"; \
	fi
	$(PYTHON) -m pip install -q -e ".[dev]"
	touch $@

demo: setup
	bash recipes/demo/run.sh

test: setup
	$(PYTHON) -m pytest -q

bench:
	$(PYTHON) bench/bench_features.py
	$(PYTHON) bench/bench_synth.py
	$(PYTHON) bench/bench_scoring.py
	$(PYTHON) bench/bench_train.py

# Downloads LibriSpeech and fine-tunes facebook/wav2vec2-base (recipes/librispeech/run.sh); it
# resumes where it stopped. Pass recipe options with ARGS, e.g. ARGS='--override train.max_steps=20'.
librispeech-finetune: setup
	bash recipes/librispeech/run.sh $(ARGS)

clean:
	rm -rf exp/demo data/demo .setup-stamp
