# Two commands (README): `make serve` installs and starts the service, `make test` runs every check.
# Both create .venv with the system python3 (>= 3.11) if it is missing.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# Re-install only when pyproject.toml changes.
STAMP_RUN := $(VENV)/.installed-run
STAMP_TEST := $(VENV)/.installed-test

.PHONY: serve test lint typecheck pytest install clean bench bench-memory

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(STAMP_RUN): pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e .
	touch $@

$(STAMP_TEST): pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e '.[train,test]'
	touch $@ $(STAMP_RUN)

install: $(STAMP_RUN)

# exec: msa replaces the recipe's shell; it exits 0 after a graceful shutdown on Ctrl-C or SIGTERM, so
# make prints no "*** [serve] Interrupt/Terminated" line.
serve: $(STAMP_RUN)
	exec $(BIN)/msa serve

lint: $(STAMP_TEST)
	$(BIN)/ruff check app tests

typecheck: $(STAMP_TEST)
	$(BIN)/mypy

pytest: $(STAMP_TEST)
	$(BIN)/python -m pytest

test: lint typecheck pytest

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache

# Benchmarks (issue 4): `make bench` runs the side-by-side benchmark (8-12 min on 2 cores) and writes
# benchmarks/results/RESULTS.md; `make bench-memory` the 10,000-request memory/start-up run (~20-35 min).
STAMP_BENCH := $(VENV)/.installed-bench
BENCH_ARGS ?=

$(STAMP_BENCH): pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e '.[bench]'
	touch $@ $(STAMP_RUN)

bench: $(STAMP_BENCH)
	$(BIN)/python -m benchmarks $(BENCH_ARGS)

bench-memory: $(STAMP_BENCH)
	$(BIN)/python -m benchmarks.memory $(BENCH_ARGS)
