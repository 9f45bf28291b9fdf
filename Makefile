# ckptlab developer commands.  `make demo` and `make test` are the README's two set-up commands:
# each creates .venv, installs everything it needs, then runs.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PIP := $(VENV)/bin/pip
STAMP := $(VENV)/.installed

.PHONY: demo test lint typecheck pytest clean

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade pip
	$(PIP) install -q "torch==2.13.0"
	$(PIP) install -q -e ".[dev,widgets,s3,dask,notebooks]"
	touch $(STAMP)

# `make demo DEMO_ARGS=--smoke` runs the non-interactive check the tests use.
demo: $(STAMP)
	$(PY) scripts/demo.py $(DEMO_ARGS)

lint: $(STAMP)
	$(VENV)/bin/ruff check ckptlab tests benchmarks scripts
	$(VENV)/bin/ruff format --check ckptlab tests benchmarks scripts

typecheck: $(STAMP)
	$(VENV)/bin/mypy

pytest: $(STAMP)
	$(PY) -m pytest

test: lint typecheck pytest

clean:
	rm -rf $(VENV) build dist .pytest_cache .mypy_cache .ruff_cache
