"""Compile the CUDA kernels (csrc/cuda) with the CPU ones into one extension, load it, and check that the
CUDA dispatch key has kernels. Needs a CUDA build of torch (make venv-cuda) and nvcc; no GPU.

    .venv-cuda/bin/python csrc/tools/cuda_compile_check.py [--build-dir build/cuda-compile]
"""
from __future__ import annotations

import argparse
import glob
import os
import runpy
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
# every operator (and overload) of the schema: the GPU path calls each of them
CUDA_OPS = ("squeezetime::squeeze_time", "squeezetime::squeeze_time.out", "squeezetime::ctl_combine",
            "squeezetime::gate_scale", "squeezetime::to_channels_last", "squeezetime::to_channels_last.out")


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--build-dir", default=os.path.join(ROOT, "build", "cuda-compile"))
    args = parser.parse_args()
    tools = runpy.run_path(os.path.join(ROOT, "csrc", "tools", "find_cuda_home.py"))
    cuda_home = tools["find_cuda_home"]()
    if not cuda_home:
        print("no CUDA toolkit found (set CUDA_HOME)", file=sys.stderr)
        return 2
    os.environ["CUDA_HOME"] = cuda_home
    os.environ.setdefault("TORCH_CUDA_ARCH_LIST", "9.0")
    os.environ.setdefault("MAX_JOBS", "2")
    import torch
    from torch.utils import cpp_extension

    if not torch.version.cuda:
        print(f"torch {torch.__version__} has no CUDA: use the CUDA build (make venv-cuda)", file=sys.stderr)
        return 2
    os.makedirs(args.build_dir, exist_ok=True)
    sources = ([os.path.join(ROOT, "csrc", "squeezetime_ops.cpp")] + sorted(glob.glob(os.path.join(ROOT, "csrc", "cpu", "*.cpp")))
               + sorted(glob.glob(os.path.join(ROOT, "csrc", "cuda", "*.cu"))))
    start = time.time()
    cpp_extension.load("squeezetime_cuda_check", sources, build_directory=args.build_dir, with_cuda=True,
                       extra_cflags=["-O2", "-fopenmp"], extra_ldflags=["-fopenmp"], extra_cuda_cflags=["-O2"],
                       extra_include_paths=tools["wheel_cuda_includes"](cuda_home),
                       is_python_module=False, verbose=False)
    missing = [op for op in CUDA_OPS if not torch._C._dispatch_has_kernel_for_dispatch_key(op, "CUDA")]
    print(f"compiled {len(sources)} sources with CUDA_HOME={cuda_home}, torch {torch.__version__} "
          f"(CUDA {torch.version.cuda}) in {time.time() - start:.0f} s; CUDA kernels missing: {missing or 'none'}")
    return 1 if missing else 0


if __name__ == "__main__":
    sys.exit(main())
