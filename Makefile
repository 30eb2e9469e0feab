# Two commands do everything on a fresh machine with Python >= 3.11 and make:
#   make demo   -> venv, install, run the quickstart end to end
#   make test   -> venv, install with test extras (and Debian's prometheus when root), ruff + mypy + pytest
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
OUT    ?= out/quickstart

.PHONY: demo test test-all lint bench clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip

$(VENV)/.installed: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install -q -e '.[test]'
	touch $@

demo: $(VENV)/.installed
	$(BIN)/twin demo -o $(OUT)

test: $(VENV)/.installed
	bash .ci/install-prometheus
	$(BIN)/ruff check twin live tests benchmarks
	$(BIN)/mypy
	$(BIN)/python -m pytest

test-all: $(VENV)/.installed
	$(BIN)/python -m pytest -m ''

bench: $(VENV)/.installed
	for b in benchmarks/bench_*.py; do echo "== $$b"; $(BIN)/python $$b || exit 1; done

clean:
	rm -rf $(VENV) out .pytest_cache .mypy_cache .ruff_cache
