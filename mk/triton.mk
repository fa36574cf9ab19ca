# Triton Inference Server on CPU hosts. .venv-triton carries the real `tritonserver` (2.51, python backend)
# bundled in the nvidia-pytriton wheel, and is also the Python the models run in: the wheel's python-backend
# stub is built against numpy 1.x (the wheel pins numpy<2), so the models need a numpy<2 environment with
# torch and av; squeezetime itself comes from this checkout (the launcher names it to the server).
# `squeezetime serve` finds this venv by itself (or set SQUEEZETIME_TRITONSERVER to a tritonserver binary).
# Its packages: requirements/venv-triton.txt.
TRITON_VENV  := $(VENV)-triton
TRITON_STAMP := $(TRITON_VENV)/.installed
TRITON_SERVER_REQUIREMENTS := requirements/venv-triton.txt

.PHONY: triton-setup bench-serve
triton-setup: $(TRITON_STAMP)

$(TRITON_STAMP): mk/triton.mk $(TRITON_SERVER_REQUIREMENTS)
	test -x $(TRITON_VENV)/bin/python || $(PYTHON) -m venv $(TRITON_VENV)
	$(TRITON_VENV)/bin/pip install -q -r $(TRITON_SERVER_REQUIREMENTS)
	touch $@

TEST_DEPS += $(TRITON_STAMP)

# `make demo` goes through Triton (squeezetime demo --via triton is its default when the server is there).
demo: $(TRITON_STAMP)

bench-serve: setup $(TRITON_STAMP)
	$(PY) -m squeezetime.cli bench-serve --demo --out build/bench_serve
