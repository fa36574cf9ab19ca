# Triton Inference Server on CPU hosts. .venv-triton carries the real `tritonserver` (2.51, python backend)
# bundled in the nvidia-pytriton wheel, and is also the Python the models run in: the wheel's python-backend
# stub is built against numpy 1.x (the wheel pins numpy<2), so the models need a numpy<2 environment with
# torch and av; squeezetime itself comes from this checkout (the launcher names it to the server).
# `squeezetime serve` finds this venv by itself (or set SQUEEZETIME_TRITONSERVER to a tritonserver binary).
TRITON_VENV  := $(VENV)-triton
TRITON_STAMP := $(TRITON_VENV)/.installed
TRITON_SERVER_REQUIREMENTS := nvidia-pytriton==0.7.0 "numpy<2" torch==2.13.0 av tqdm "opencv-python-headless<4.11"
# The clip model serves `squeezetime quantize` artifacts with the int8 backend (OpenVINO; numpy 1.x works).
TRITON_SERVER_REQUIREMENTS += openvino==2026.4.1

.PHONY: triton-setup bench-serve
triton-setup: $(TRITON_STAMP)

$(TRITON_STAMP): mk/triton.mk
	test -x $(TRITON_VENV)/bin/python || $(PYTHON) -m venv $(TRITON_VENV)
	$(TRITON_VENV)/bin/pip install -q $(TRITON_SERVER_REQUIREMENTS)
	touch $@

TEST_DEPS += $(TRITON_STAMP)

# `make demo` goes through Triton (squeezetime demo --via triton is its default when the server is there).
demo: $(TRITON_STAMP)

bench-serve: setup $(TRITON_STAMP)
	$(PY) -m squeezetime.cli bench-serve --demo --out build/bench_serve
