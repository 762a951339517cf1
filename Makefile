# Quick start: `make run` (set up + start the daemon) and `make test` (set up + run the suite).
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: run test lint bench clean

$(BIN)/python:
	$(PYTHON) -c 'import sys; sys.exit("icsd needs Python >= 3.11, found " + sys.version.split()[0]) if sys.version_info < (3, 11) else None'
	@$(PYTHON) -c 'import ensurepip' 2>/dev/null || { echo "icsd: $(PYTHON) cannot create a venv (no ensurepip): on Debian/Ubuntu run 'sudo apt install python3-venv', then make again" >&2; exit 1; }
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

# A strict editable install: a static .pth names a tree of symlinks to icsd's files under build/, so edits
# show at once and no import hook runs at interpreter start (setuptools' default editable install of this
# flat layout adds one: ~16 ms in every Python process, i.e. in the daemon, its fork server and
# multiprocessing's resource tracker, ~45 ms per `icsd batch`, measured; a regular install has none).
# Adding or removing a module changes its folder's mtime, and so reinstalls.
# Where PYTHONDONTWRITEBYTECODE is set Python never caches bytecode: compiling it here saves each start
# ~80 ms (measured on `icsd batch`); build/ holds the cache for the symlinked modules.
INSTALL_INPUTS := pyproject.toml $(shell find icsd -type d ! -name __pycache__) icsd/core/quantization/_lloyd.c \
	icsd/core/quantization/_pixels.c icsd/core/quantization/_dither.c
PIP_INSTALL := $(BIN)/python -m pip install --quiet --config-settings editable_mode=strict -e

$(VENV)/.installed-run: $(INSTALL_INPUTS) | $(BIN)/python
	$(PIP_INSTALL) .
	$(BIN)/python -m compileall -q icsd build
	touch $@

$(VENV)/.installed-test: $(INSTALL_INPUTS) | $(BIN)/python
	$(PIP_INSTALL) '.[test,bench]'
	$(BIN)/python -m compileall -q icsd build
	touch $@ $(VENV)/.installed-run

run: $(VENV)/.installed-run
	$(BIN)/icsd run

lint: $(VENV)/.installed-test
	$(BIN)/ruff check icsd tests bench

# Two test processes (pytest-xdist): most tests wait on a daemon subprocess, so two overlap well even on two cores
# (docs/development.md). `pytest tests/test_x.py` alone stays one process.
TEST_PROCESSES ?= 2

test: $(VENV)/.installed-test lint
	$(BIN)/python -m pytest -n $(TEST_PROCESSES) --dist worksteal

bench: $(VENV)/.installed-test
	$(BIN)/python bench/quantizers.py
	$(BIN)/python bench/throughput.py

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache .ruff_cache icsd/core/quantization/*.so
