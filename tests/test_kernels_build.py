"""Build checks of csrc/: the CUDA kernels compile (and link, and register) against a CUDA build of torch
(.venv-cuda, no GPU needed), and the CMake library builds against libtorch and passes its ctest."""
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow  # compiles the CUDA kernels and the CMake library

ROOT = Path(__file__).resolve().parent.parent
VENV_CUDA_PY = ROOT / ".venv-cuda" / "bin" / "python"


@pytest.mark.timeout(1200)
@pytest.mark.skipif(not VENV_CUDA_PY.exists(), reason="no .venv-cuda (CUDA build of torch): run `make venv-cuda`")
def test_cuda_kernels_compile_link_and_register():
    proc = subprocess.run([str(VENV_CUDA_PY), str(ROOT / "csrc" / "tools" / "cuda_compile_check.py")],
                          capture_output=True, text=True, timeout=1100, cwd=ROOT)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]
    assert "CUDA kernels missing: none" in proc.stdout


@pytest.mark.timeout(900)
@pytest.mark.skipif(shutil.which("cmake") is None, reason="cmake not installed")
def test_cmake_library_builds_and_ctest_passes():
    import torch

    build = ROOT / "build" / "cmake"
    gen = ["-G", "Ninja"] if shutil.which("ninja") else []
    env = {**os.environ, "CMAKE_BUILD_PARALLEL_LEVEL": "2"}
    for cmd in (["cmake", "-S", str(ROOT), "-B", str(build), *gen, f"-DCMAKE_PREFIX_PATH={torch.utils.cmake_prefix_path}",
                 f"-DPython_EXECUTABLE={sys.executable}"],
                ["cmake", "--build", str(build)],
                ["ctest", "--test-dir", str(build), "--output-on-failure"]):
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=800, env=env)
        assert proc.returncode == 0, f"{' '.join(cmd)}\n{proc.stdout[-4000:]}\n{proc.stderr[-4000:]}"
    assert "100% tests passed" in proc.stdout
    assert list(build.glob("libsqueezetime_ops.*"))


@pytest.mark.timeout(600)
def test_error_canary_every_operator_error_is_a_runtime_error():
    """csrc/tools/error_canary.py (what scripts/gpu_check.sh runs on the GPU machine, issue #20 failure 3): one
    bad argument per operator, each in a child process, must raise RuntimeError there, not crash it."""
    from squeezetime import ops

    if not ops.extension_available():
        pytest.skip(f"extension not built: {ops.extension_error()}")
    proc = subprocess.run([sys.executable, str(ROOT / "csrc" / "tools" / "error_canary.py")],
                          capture_output=True, text=True, timeout=550, cwd=ROOT)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]
    results = [line for line in proc.stdout.splitlines() if line.startswith("error canary: ") and "cpu" in line]
    assert len(results) >= 6 and all("RuntimeError (ok)" in line for line in results), proc.stdout
    assert "built by: " in proc.stdout  # the compiler that built the module is named
