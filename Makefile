# The README's commands: `make setup` (once, on a fresh machine), `make test` and `make lint`.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python

LINT_VENV := .venv-lint
CSRC := $(shell find tensormask_proj/layers/csrc -name '*.h' -o -name '*.cpp' -o -name '*.cu' -o -name '*.cuh')

.PHONY: setup test lint format build clean

setup:
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --upgrade pip
	$(PY) -m pip install -r requirements.txt
	$(PY) tools/install_detectron2.py
	$(MAKE) build

# (Re)compile tensormask_proj._C in place and install the package in editable mode.
build:
	$(PY) -m pip install --no-build-isolation --no-deps -e .

test:
	$(PY) -m pytest tests

# The linters live in their own venv: detectron2 0.6 pins a black (21.4b2) that no longer runs.
$(LINT_VENV): requirements-lint.txt
	$(PYTHON) -m venv $(LINT_VENV)
	$(LINT_VENV)/bin/pip install -r requirements-lint.txt
	touch $(LINT_VENV)

# ruff and black (pyproject.toml), clang-format (.clang-format): checks only, in seconds.
lint: $(LINT_VENV)
	$(LINT_VENV)/bin/ruff check .
	$(LINT_VENV)/bin/black --check --quiet .
	$(LINT_VENV)/bin/clang-format --dry-run --Werror $(CSRC)

# Rewrite the sources in the linters' style.
format: $(LINT_VENV)
	$(LINT_VENV)/bin/ruff check --fix --quiet .
	$(LINT_VENV)/bin/black --quiet .
	$(LINT_VENV)/bin/clang-format -i $(CSRC)

clean:
	rm -rf build *.egg-info tensormask_proj/_C*.so
