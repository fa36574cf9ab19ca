# Export formats and the TensorRT path (docs/export.md).
# - .venv gets onnx, onnxruntime, onnxscript from requirements/main/export.txt.
# - .venv-trt: torch 2.14.1 + torch-tensorrt-rtx for the converter-coverage PROXY (a Torch-TensorRT dry run on
#   CPU; the real TensorRT libraries cannot be installed on this project's machines). ~5.7 GB, ~1-2 min offline.
# - .venv-triton (mk/triton.mk) gets onnxruntime, so that the bundled tritonserver's python backend can
#   serve the ONNX artifact (model squeezetime_onnx_python).
EXPORT_TRT_VENV      := $(VENV)-trt
EXPORT_TRT_STAMP     := $(EXPORT_TRT_VENV)/.installed
EXPORT_TRITON_VENV   := $(VENV)-triton
EXPORT_TRITON_STAMP  := $(EXPORT_TRITON_VENV)/.export-onnxruntime

.PHONY: export-setup trt-coverage gpu-check-trt
export-setup: $(EXPORT_TRT_STAMP) $(EXPORT_TRITON_STAMP)

$(EXPORT_TRT_STAMP): requirements/venv-trt.txt
	test -x $(EXPORT_TRT_VENV)/bin/python || $(PYTHON) -m venv $(EXPORT_TRT_VENV)
	$(EXPORT_TRT_VENV)/bin/pip install -q -r requirements/venv-trt.txt
	touch $@

# needs the server venv of mk/triton.mk first (its stamp file)
$(EXPORT_TRITON_STAMP): $(EXPORT_TRITON_VENV)/.installed mk/export.mk
	$(EXPORT_TRITON_VENV)/bin/pip install -q onnxruntime "numpy<2"
	touch $@

TEST_DEPS += $(EXPORT_TRT_STAMP) $(EXPORT_TRITON_STAMP)

# Converter coverage of the serving graph (proxy, no GPU): prints JSON, exit 0 only at 100 % in one block.
trt-coverage: setup $(EXPORT_TRT_STAMP)
	SQUEEZETIME_DISABLE_EXT=1 PYTHONPATH=$(CURDIR) $(EXPORT_TRT_VENV)/bin/python scripts/trt_coverage.py --json build/trt_coverage.json

# On a GPU machine with Torch-TensorRT (pip install -e '.[tensorrt]'): build the engine, check it against
# eager, measure clips/s; prints JSON. PYTHON_GPU picks the interpreter (default: the current python3).
gpu-check-trt:
	bash scripts/gpu_check_trt.sh
