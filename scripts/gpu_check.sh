#!/usr/bin/env bash
# `make gpu-check`: everything of ours that runs only on an NVIDIA GPU, in one command (about 6 minutes on an H200).
#   1. build the CPU and CUDA extensions for the visible GPU;
#   2. in parallel, each in its own process so that one crash cannot hide the others: the operator tests (CPU and
#      CUDA), the CUDA graph and golden tests, the optimize tests (CPU oneDNN path under this torch), the GPU
#      serving tests, every GPU path in one process (issue 20's illegal memory access), the error canary (issue 20's
#      segfault on throw: compiler, exported symbols, one error per operator in a child process), and
#      compute-sanitizer memcheck on one small call of each operator and one graph replay;
#   3. alone on the GPU: the table against eager fp16 and torch.compile(mode="reduce-overhead") fp16, network only
#      and end to end from host uint8 clips (gpu_bench.json, gpu_bench.png);
#   4. one line per check: pass, fail or skip (with why), then one per speed target of issue 20: met or miss (a
#      miss is reported, not failed: speed is measured, correctness is checked).
# Writes into $OUT (the device tool's folder) or build/gpu-check: gpu_check.log, summary.txt, gpu_bench.{json,png}.
# PyAV and the golden fixtures come from .gpu-carry/ when the machine lacks them (`make gpu-carry` fills it).
#   Usage: bash scripts/gpu_check.sh [python]
set -uo pipefail
cd "$(dirname "$0")/.."
PY=${1:-${PY:-python3}}
DEST=${OUT:-build/gpu-check}
LOGS=$(mktemp -d)
mkdir -p "$DEST"
SUMMARY="$DEST/summary.txt"
: > "$SUMMARY"
START=$SECONDS

say() { echo "[gpu-check $((SECONDS - START))s] $*"; }
result() {  # name, status (pass/fail/skip), detail
  printf '%-22s %-4s %s\n' "$1" "$2" "$3" | tee -a "$SUMMARY"
}
finish() {
  say "summary"
  cat "$LOGS"/*.log > "$DEST/gpu_check.log" 2>/dev/null
  echo "== one line per check =="
  cat "$SUMMARY"
  rm -rf "$LOGS"
  if grep -q ' fail ' "$SUMMARY"; then exit 1; fi
  exit 0
}

# -- 0. the machine, and what it lacks ---------------------------------------------------------------------------
{
  nvidia-smi -L 2>&1 | head -4
  "$PY" -c "import sys, torch; print('python', sys.version.split()[0], '| torch', torch.__version__, '| cuda', torch.version.cuda, '| gpu', torch.cuda.get_device_name() if torch.cuda.is_available() else None)"
  echo "host compiler: $(${CXX:-c++} --version 2>&1 | head -1)"
  echo "nvcc: $(nvcc --version 2>&1 | tail -1)"
} 2>&1 | tee "$LOGS/00-machine.log"
if ! "$PY" -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)"; then
  result machine fail "torch sees no CUDA GPU"
  finish
fi
if ! "$PY" -c "import av" 2>/dev/null; then
  if ls .gpu-carry/whl/*.whl >/dev/null 2>&1; then
    "$PY" -m pip install -q --no-index --no-deps --no-compile --target /tmp/gpu-check-site .gpu-carry/whl/*.whl
    export PYTHONPATH=/tmp/gpu-check-site${PYTHONPATH:+:$PYTHONPATH}
    say "PyAV installed from .gpu-carry/whl"
  else
    result pyav fail "PyAV is missing: run 'make gpu-carry' on a machine with pip and carry .gpu-carry"
    finish
  fi
fi
if [ -z "${SQUEEZETIME_SHARED:-}" ] && [ ! -f ../shared/reference/cases.json ] && [ -f .gpu-carry/shared/reference/cases.json ]; then
  export SQUEEZETIME_SHARED=$PWD/.gpu-carry/shared
fi

# -- 1. build ----------------------------------------------------------------------------------------------------
export CUDA_HOME=${CUDA_HOME:-$("$PY" csrc/tools/find_cuda_home.py)}
export TORCH_CUDA_ARCH_LIST=${TORCH_CUDA_ARCH_LIST:-$("$PY" -c "import torch; c=torch.cuda.get_device_capability(); print(f'{c[0]}.{c[1]}')")}
export MAX_JOBS=${MAX_JOBS:-$(nproc)}
say "build: CUDA_HOME=$CUDA_HOME TORCH_CUDA_ARCH_LIST=$TORCH_CUDA_ARCH_LIST MAX_JOBS=$MAX_JOBS"
if "$PY" setup.py -q build_ext --inplace > "$LOGS/01-build.log" 2>&1 \
   && "$PY" -c "from squeezetime import ops; assert ops.cuda_extension_available(), ops._load()" >> "$LOGS/01-build.log" 2>&1; then
  result build pass "CPU and CUDA extensions for sm_${TORCH_CUDA_ARCH_LIST/./} in $((SECONDS - START)) s"
else
  tail -30 "$LOGS/01-build.log"
  result build fail "see gpu_check.log"
  finish
fi

# -- 2. correctness, each check in its own process, in parallel ----------------------------------------------------
export OMP_NUM_THREADS=2 PYTHONUNBUFFERED=1
declare -A PIDS
run_check() {  # name, timeout seconds, command...
  local name=$1 limit=$2; shift 2
  ( timeout -k 10 "$limit" "$@" > "$LOGS/10-$name.log" 2>&1; echo $? > "$LOGS/$name.rc" ) &
  PIDS[$name]=$!
}
pytest_check() {  # name, timeout, test file
  run_check "$1" "$2" "$PY" -m pytest -q -p no:cacheprovider -rs "$3"
}
pytest_check ops 240 tests/test_ops.py
pytest_check ops-cuda 240 tests/test_ops_cuda.py
pytest_check optimize-cuda 300 tests/test_optimize_cuda.py
pytest_check cuda-graphs-logic 240 tests/test_cuda_graphs.py
pytest_check optimize-cpu 300 tests/test_optimize.py
pytest_check serving-gpu 300 tests/test_serving_gpu.py
run_check paths-together 300 "$PY" scripts/gpu_paths_together.py
run_check error-canary 180 "$PY" csrc/tools/error_canary.py  # failure 3: every operator error a RuntimeError
if command -v compute-sanitizer >/dev/null; then
  run_check memcheck 300 compute-sanitizer --tool memcheck --error-exitcode 86 "$PY" scripts/gpu_sanitize.py
fi
say "running ${#PIDS[@]} checks in parallel"
for name in "${!PIDS[@]}"; do wait "${PIDS[$name]}"; done
for name in ops ops-cuda optimize-cuda cuda-graphs-logic optimize-cpu serving-gpu paths-together error-canary memcheck; do
  if [ ! -f "$LOGS/$name.rc" ]; then
    result "$name" skip "compute-sanitizer is not installed"
    continue
  fi
  rc=$(cat "$LOGS/$name.rc")
  last=$(grep -E 'passed|failed|error|agreed|MISMATCH|FAILED|ERROR SUMMARY|CRASH|RuntimeError' "$LOGS/10-$name.log" | tail -1)
  case $rc in
    0) result "$name" pass "$last" ;;
    124|137) result "$name" fail "timed out: $last" ;;
    86) result "$name" fail "compute-sanitizer found errors: $(grep 'ERROR SUMMARY' "$LOGS/10-$name.log" | tail -1)" ;;
    *) if [ "$rc" -gt 128 ]; then result "$name" fail "killed by signal $((rc - 128)) (crash): $last";
       else result "$name" fail "exit $rc: $last"; fi ;;
  esac
done
grep -h "SKIPPED" "$LOGS"/10-*.log | sort | uniq -c | head -20 > "$LOGS/20-skips.log"

# -- 3. the table, alone on the GPU ----------------------------------------------------------------------------------
say "benchmark"
if timeout -k 10 360 "$PY" -m squeezetime.bench.gpu --out "$DEST" --rounds 5 > "$LOGS/30-bench.log" 2>&1; then
  result bench pass "$DEST/gpu_bench.json, gpu_bench.png"
else
  tail -20 "$LOGS/30-bench.log"
  result bench fail "see gpu_check.log (gpu_bench.json keeps the batch sizes measured before it stopped)"
fi
if [ -f "$DEST/gpu_bench.json" ]; then
  "$PY" - "$DEST/gpu_bench.json" <<'EOF' | tee -a "$SUMMARY"
import json, sys
for name, ok in json.load(open(sys.argv[1]))["targets"].items():
    print(f"{'target':<22} {'-' if ok is None else ('met' if ok else 'miss'):<4} {name}")
EOF
fi
sed -n '/^clips\/s/,$p' "$LOGS/30-bench.log"
say "done in $((SECONDS - START)) s"
finish
