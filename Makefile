# The README's commands: `make setup` (once, on a fresh machine) and `make test`.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python

.PHONY: setup test build clean

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

clean:
	rm -rf build *.egg-info tensormask_proj/_C*.so
