"""Print the CUDA toolkit root (the directory with bin/nvcc and lib64/libcudart.so), or nothing.

torch.utils.cpp_extension guesses CUDA_HOME from the `nvcc` on PATH (its parent's parent). When that nvcc
is a wrapper script (``exec /usr/local/cuda-13.0/bin/nvcc "$@"``) the guess is wrong and linking fails
(``cannot find -lcudart``). Order: $CUDA_HOME / $CUDA_PATH, the real nvcc behind PATH's (symlinks resolved,
wrapper scripts read), then /usr/local/cuda*.
"""
from __future__ import annotations

import glob
import os
import re
import shutil


def is_cuda_root(path: str | None) -> bool:
    if not path:
        return False
    has_nvcc = os.path.isfile(os.path.join(path, "bin", "nvcc"))
    has_cudart = any(glob.glob(os.path.join(path, pattern, "libcudart.so*"))
                     for pattern in ("lib64", "lib", "targets/*/lib"))
    return has_nvcc and has_cudart


def find_cuda_home() -> str | None:
    for var in ("CUDA_HOME", "CUDA_PATH"):
        if is_cuda_root(os.environ.get(var)):
            return os.environ[var]
    nvcc = shutil.which("nvcc")
    if nvcc:
        real = os.path.realpath(nvcc)
        root = os.path.dirname(os.path.dirname(real))
        if is_cuda_root(root):
            return root
        try:
            if os.path.getsize(real) < 65536:
                text = open(real, encoding="utf-8", errors="replace").read()
                for match in re.finditer(r"(/[^\s\"']+)/bin/nvcc", text):
                    if is_cuda_root(os.path.realpath(match.group(1))):
                        return os.path.realpath(match.group(1))
        except OSError:
            pass
    for root in sorted(glob.glob("/usr/local/cuda*"), reverse=True):
        if is_cuda_root(os.path.realpath(root)):
            return os.path.realpath(root)
    return None


def wheel_cuda_includes(cuda_home: str | None) -> list[str]:
    """Header directories of the nvidia-* wheels that a pip-installed CUDA torch depends on, for the headers
    that torch's CUDA headers include but a minimal toolkit lacks (e.g. cusparse.h, cublas_v2.h)."""
    try:
        import torch
    except ImportError:
        return []
    site = os.path.dirname(os.path.dirname(torch.__file__))
    have = set(os.listdir(os.path.join(cuda_home, "include"))) if cuda_home and os.path.isdir(
        os.path.join(cuda_home, "include")) else set()
    dirs = []
    for inc in sorted(glob.glob(os.path.join(site, "nvidia", "*", "include"))):
        if any(name not in have for name in os.listdir(inc) if name.endswith(".h")):
            dirs.append(inc)
    return dirs


if __name__ == "__main__":
    print(find_cuda_home() or "")
