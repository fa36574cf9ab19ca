# Quick start: `make demo` and `make test`. Both create .venv and install what is missing first.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

.PHONY: setup demo test clean

setup: $(STAMP)

$(STAMP): requirements/test.txt setup.py
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q -r requirements/test.txt
	$(PY) -m pip install -q --no-build-isolation --no-deps -e .
	touch $@

demo: setup
	$(PY) -m squeezetime.cli demo

test: setup
	$(PY) -m pytest -q tests

clean:
	rm -rf build $(VENV) *.egg-info
