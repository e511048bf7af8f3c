# asr_sft: common entry points. `make help` lists them.
PYTHON ?= python3
APT_PACKAGES := espeak-ng sctk sox flac

.PHONY: help setup demo test bench clean

help:
	@echo "make setup   install system packages (as root) and the Python package"
	@echo "make demo    the main job on the built-in synthetic corpus (offline, CPU)"
	@echo "make test    the test suite (offline, CPU)"
	@echo "make bench   the benchmarks under bench/ (prints figures)"

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

clean:
	rm -rf exp/demo data/demo
