# ckptlab developer commands.  `make demo` and `make test` are the README's two set-up commands:
# each creates .venv, installs everything it needs, then runs.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PIP := $(VENV)/bin/pip
STAMP := $(VENV)/.installed

.PHONY: demo test lint typecheck pytest clean js js-check system-packages labext

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade pip
	$(PIP) install -q "torch==2.13.0"
	$(PIP) install -q -e ".[dev,widgets,s3,dask,notebooks,jax,keras,orbax,gguf]"
	touch $(STAMP)

# `make demo DEMO_ARGS=--smoke` runs the non-interactive check the tests use.
demo: $(STAMP) js
	$(PY) scripts/demo.py $(DEMO_ARGS)

# The explorer front end (labextension/): npm ci from the lockfile, then esbuild bundles the
# widget ESM and the Graphviz WebAssembly engine into ckptlab/widgets/static/ (generated).
JS := labextension
JS_STAMP := $(JS)/node_modules/.installed
$(JS_STAMP): $(JS)/package.json $(JS)/package-lock.json
	cd $(JS) && npm ci --no-audit --no-fund
	touch $@

js: $(JS_STAMP)
	cd $(JS) && npm run build

# TypeScript: strict tsc, eslint + prettier, node's test runner over the DOM-free core.
js-check: $(JS_STAMP)
	cd $(JS) && npm run check

# The JupyterLab extension (docs/labextension.md): tsc + @jupyter/builder into ckptlab/labextension/
# (generated), shipped in wheels as share/jupyter/labextensions/ckptlab. pip's build hook runs the
# same build when it is missing or stale; this target rebuilds it after edits.
labext: $(JS_STAMP)
	cd $(JS) && npm run build:lab

# Browser tests drive Debian's Chromium (never `playwright install`); `ckptlab export --format
# svg` is tested with Debian's Graphviz (the explorer itself needs no system Graphviz).
system-packages:
	(test -x /usr/bin/chromium && command -v dot >/dev/null) || \
		(apt-get update && apt-get install -y chromium graphviz)

lint: $(STAMP)
	$(VENV)/bin/ruff check ckptlab tests benchmarks scripts
	$(VENV)/bin/ruff format --check ckptlab tests benchmarks scripts

typecheck: $(STAMP)
	$(VENV)/bin/mypy

# CKPTLAB_NO_SKIPS=1: everything is installed here, so a skipped test is a failure.
pytest: $(STAMP) js labext system-packages
	CKPTLAB_NO_SKIPS=1 $(PY) -m pytest

test: lint typecheck js-check pytest

clean:
	rm -rf $(VENV) build dist .pytest_cache .mypy_cache .ruff_cache
