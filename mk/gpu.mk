# The GPU check (docs/gpu.md). `make gpu-check` runs on a machine with an NVIDIA GPU and a CUDA build of torch:
# build for the visible GPU, the CUDA tests (each module in its own process), compute-sanitizer, the paths-together
# regression, the GPU table (JSON + PNG), one pass/fail line per check. A GPU machine that lacks PyAV or the golden
# fixtures gets them from .gpu-carry/, which `make gpu-carry` fills here (a PyAV wheel for the GPU image's Python,
# and the golden case that fits the device tool's 64 MiB: carry ".gpu-carry" with the run).
GPU_CARRY := .gpu-carry
GPU_PYTHON_VERSION ?= 3.12

.PHONY: gpu-carry
gpu-carry:
	rm -rf $(GPU_CARRY) && mkdir -p $(GPU_CARRY)/whl $(GPU_CARRY)/shared/reference
	$(PY) -m pip download -q --no-deps --only-binary=:all: --python-version $(GPU_PYTHON_VERSION) --implementation cp \
	  --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
	  -d $(GPU_CARRY)/whl av
	$(PY) scripts/gpu_carry_fixtures.py $(GPU_CARRY)/shared/reference
	du -sh $(GPU_CARRY)
