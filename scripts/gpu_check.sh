#!/usr/bin/env bash
# On a machine with an NVIDIA GPU and a CUDA build of torch: build the CUDA extension, run every operator test
# and the golden parity on CUDA, and print timings.   Usage: bash scripts/gpu_check.sh [python]
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${1:-${PY:-python}}
"$PY" -c "import torch; assert torch.cuda.is_available(), 'no CUDA GPU visible to torch'; print('GPU:', torch.cuda.get_device_name(), '| torch', torch.__version__)"
export CUDA_HOME=${CUDA_HOME:-$("$PY" csrc/tools/find_cuda_home.py)}
export TORCH_CUDA_ARCH_LIST=${TORCH_CUDA_ARCH_LIST:-$("$PY" -c "import torch; c=torch.cuda.get_device_capability(); print(f'{c[0]}.{c[1]}')")}
echo "CUDA_HOME=$CUDA_HOME TORCH_CUDA_ARCH_LIST=$TORCH_CUDA_ARCH_LIST"
time "$PY" setup.py -q build_ext --inplace
"$PY" -c "from squeezetime import ops; assert ops.cuda_extension_available(), 'CUDA extension not loaded'; print('CUDA extension loaded')"
"$PY" -m pytest -q tests/test_ops.py tests/test_optimize_cuda.py -p no:cacheprovider
"$PY" -m squeezetime.cli bench --device cuda --batch-sizes 1 8 --rounds 20 --out "${OUT:-bench-gpu}" \
  --paths eager compile opt-fp32 opt-fp32-unfused opt-fp16 opt-fp16-cudagraph
