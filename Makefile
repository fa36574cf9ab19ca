# Quick start: `make demo` and `make test`. Both create .venv and install what is missing first.
# Feature-specific setup (extra virtual environments, servers, builds) lives in mk/*.mk; each adds
# its prerequisites of `make test` to TEST_DEPS.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
MAIN_REQUIREMENTS := $(sort $(wildcard requirements/main/*.txt))
TEST_DEPS :=

.PHONY: setup demo test clean
.DEFAULT_GOAL := demo

setup: $(STAMP)

# requirements/main/*.txt: everything the tests need in .venv; then the package itself (editable, declared in
# pyproject.toml; setup.py builds the C++ extension).
$(STAMP): $(MAIN_REQUIREMENTS) pyproject.toml setup.py
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q $(addprefix -r ,$(MAIN_REQUIREMENTS))
	$(PY) -m pip install -q --no-build-isolation --no-deps -e .
	touch $@

include $(sort $(wildcard mk/*.mk))

demo: setup
	$(PY) -m squeezetime.cli demo

test: setup $(TEST_DEPS)
	$(PY) -m pytest -q tests

clean:
	rm -rf build $(VENV) $(VENV)-* *.egg-info
