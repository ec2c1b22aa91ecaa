# cnnlab: the two commands a fresh machine needs are `make demo` and `make test`.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: setup demo test test-fast lint format bench bench-quick bench-robust bench-robust-quick bench-transfer bench-transfer-quick serve clean

setup: $(STAMP)

# torch first, pinned: the CPU build lies on this machine's disk; asking pip for
# an unpinned torch would pull a CUDA build of several GB.
$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet torch==2.13.0
	$(PY) -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

demo: setup
	$(VENV)/bin/cnnlab train

test: setup
	$(PY) -m pytest

test-fast: setup
	$(PY) -m pytest -m "not slow and not browser"

lint: setup
	$(VENV)/bin/ruff check cnnlab tests bench
	$(VENV)/bin/ruff format --check cnnlab tests bench
	$(VENV)/bin/lint-imports

format: setup
	$(VENV)/bin/ruff format cnnlab tests bench
	$(VENV)/bin/ruff check --fix cnnlab tests bench

BENCH_STAMP := $(VENV)/.bench-installed

$(BENCH_STAMP): $(STAMP)
	$(PY) -m pip install --quiet -e '.[dev,bench]'
	touch $(BENCH_STAMP)

bench: $(BENCH_STAMP)
	$(PY) -m bench.run

bench-quick: $(BENCH_STAMP)
	$(PY) -m bench.run --quick

# cnnlab with no flags vs a plain-PyTorch reference on small and own data (bench/robustness.py):
# 8 cells x 3 seeds: about 80 min at load 1.5-4 (2026-11-30); quick: 1 seed, 4 cells, 7-13 min.
bench-robust: setup
	$(PY) -m bench.robustness

bench-robust-quick: setup
	$(PY) -m bench.robustness --quick

# cnnlab (no flags, and --model default) vs a plain EfficientNet-Lite0 fine-tune and a plain scratch
# net on small own-image folders (bench/transfer.py): 5 cells x 3 seeds; quick: 1 seed, 3 small cells.
bench-transfer: setup
	$(PY) -m bench.transfer

bench-transfer-quick: setup
	$(PY) -m bench.transfer --quick

serve: setup
	$(VENV)/bin/cnnlab serve latest

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache .ruff_cache
