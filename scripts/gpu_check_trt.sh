#!/usr/bin/env bash
# One-command GPU validation of the TensorRT path: engine build, parity with eager, clips/s, as JSON.
# Needs an NVIDIA GPU and Torch-TensorRT: pip install -e '.[tensorrt]' (see docs/export.md).
#   bash scripts/gpu_check_trt.sh [--checkpoint PATH] [--batches 1 8 64 256] [--skip-compile]
# PYTHON_GPU selects the interpreter (default: python3). The JSON also lands in build/gpu_check_trt/result.json.
set -euo pipefail
cd "$(dirname "$0")/.."
PY="${PYTHON_GPU:-python3}"
if ! command -v nvidia-smi >/dev/null 2>&1 || ! nvidia-smi -L >/dev/null 2>&1; then
  echo "gpu-check-trt: no NVIDIA GPU here (nvidia-smi failed); run it on a GPU machine" >&2
  exit 2
fi
if ! "$PY" -c "import torch_tensorrt, tensorrt" >/dev/null 2>&1; then
  echo "gpu-check-trt: $PY cannot import torch_tensorrt/tensorrt; install with: $PY -m pip install -e '.[tensorrt]'" >&2
  exit 2
fi
mkdir -p build/gpu_check_trt
exec "$PY" scripts/trt_validate.py --json build/gpu_check_trt/result.json "$@"
