# Kernels (csrc/): the CPU extension (squeezetime/_C*.so) is built in place before the tests, and must build and
# load. make setup's `pip install --no-build-isolation -e .` builds it already; setup.py gives both that and
# `setup.py build_ext --inplace` the same build/temp.* directory, so this rule recompiles only what changed since.
# CI also compiles the CUDA kernels, compile only, against a CUDA build of torch in its own venv (.venv-cuda):
# tests/test_kernels_build.py runs csrc/tools/cuda_compile_check.py in it. `make gpu-check` runs everything on
# a machine with an NVIDIA GPU.
VENV_CUDA := .venv-cuda
VENV_CUDA_STAMP := $(VENV_CUDA)/.installed

.PHONY: kernels venv-cuda cuda-compile-check gpu-check kernels-cmake

KERNEL_SOURCES := $(wildcard csrc/*.h csrc/*.cpp csrc/cpu/*.h csrc/cpu/*.cpp csrc/cuda/*.cu) csrc/tools/module_exports.map
KERNELS_STAMP := build/.kernels-cpu.stamp

kernels: $(KERNELS_STAMP)

$(KERNELS_STAMP): $(STAMP) $(KERNEL_SOURCES) setup.py
	$(PY) setup.py -q build_ext --inplace
	$(PY) -c "from squeezetime import ops; assert ops.extension_available(), ops.extension_error(); print('squeezetime._C built')"
	mkdir -p build && touch $@

TEST_DEPS += $(KERNELS_STAMP)

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

# Other torch versions (issue #20; docs/kernels.md, "Torch versions"): the CPU extension is built out of tree
# against each (build/<name>/lib; SQUEEZETIME_EXT_DIR points squeezetime at it) and tests/test_torch_versions.py
# runs the kernel tests under it: 2.11 (.venv-torch211, the oldest torch pyproject.toml claims) and 2.14.1 (.venv-cuda).
# .venv keeps its in-place build against 2.13.
VENV_TORCH211 := .venv-torch211
VENV_TORCH211_STAMP := $(VENV_TORCH211)/.installed
VENV_CUDA_TESTS_STAMP := $(VENV_CUDA)/.tests-installed

.PHONY: torch-versions

$(VENV_TORCH211_STAMP): requirements/venv-torch211.txt
	test -x $(VENV_TORCH211)/bin/python || $(PYTHON) -m venv $(VENV_TORCH211)
	$(VENV_TORCH211)/bin/python -m pip install -q -r requirements/venv-torch211.txt
	touch $@

$(VENV_CUDA_TESTS_STAMP): $(VENV_CUDA_STAMP) requirements/venv-cuda-tests.txt
	$(VENV_CUDA)/bin/python -m pip install -q -r requirements/venv-cuda-tests.txt
	touch $@

# $(1): build/$(1)/lib gets squeezetime/_C*.so built against the torch of venv python $(3), installed by stamp $(2)
define EXTENSION_FOR_TORCH
build/$(1)/.built: $(2) $$(KERNEL_SOURCES) setup.py
	SQUEEZETIME_NO_CUDA=1 $(3) setup.py -q build_ext --build-lib build/$(1)/lib --build-temp build/$(1)/temp
	touch $$@
TORCH_VERSION_BUILDS += build/$(1)/.built
endef
$(eval $(call EXTENSION_FOR_TORCH,torch211,$(VENV_TORCH211_STAMP),$(VENV_TORCH211)/bin/python))
$(eval $(call EXTENSION_FOR_TORCH,torch214,$(VENV_CUDA_TESTS_STAMP),$(VENV_CUDA)/bin/python))

torch-versions: $(TORCH_VERSION_BUILDS)

TEST_DEPS += $(TORCH_VERSION_BUILDS)
