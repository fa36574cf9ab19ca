# Kernels (csrc/): the CPU extension is built by `make setup` (pip install -e . runs setup.py build_ext).
# CI also compiles the CUDA kernels, compile only, against a CUDA build of torch in its own venv (.venv-cuda):
# tests/test_kernels_build.py runs csrc/tools/cuda_compile_check.py in it. `make gpu-check` runs everything on
# a machine with an NVIDIA GPU.
VENV_CUDA := .venv-cuda
VENV_CUDA_STAMP := $(VENV_CUDA)/.installed

.PHONY: venv-cuda cuda-compile-check gpu-check kernels-cmake

venv-cuda: $(VENV_CUDA_STAMP)

$(VENV_CUDA_STAMP): requirements/venv-cuda.txt
	test -x $(VENV_CUDA)/bin/python || $(PYTHON) -m venv $(VENV_CUDA)
	$(VENV_CUDA)/bin/python -m pip install -q -r requirements/venv-cuda.txt
	touch $@

TEST_DEPS += $(VENV_CUDA_STAMP)

# Compile (and import, which checks the link) the CUDA extension; CUDA_HOME found from the real nvcc.
cuda-compile-check: $(VENV_CUDA_STAMP)
	$(VENV_CUDA)/bin/python csrc/tools/cuda_compile_check.py

# The C++ library and its ctest, against the .venv's libtorch.
kernels-cmake: setup
	cmake -S . -B build/cmake -G Ninja -DCMAKE_PREFIX_PATH="$$($(PY) -c 'import torch; print(torch.utils.cmake_prefix_path)')"
	cmake --build build/cmake -j2
	ctest --test-dir build/cmake --output-on-failure

gpu-check:
	bash scripts/gpu_check.sh
