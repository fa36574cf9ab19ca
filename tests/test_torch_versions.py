"""The kernels and squeezetime.optimize under the other torch versions CI builds the extension against (issue #20):
users install squeezetime into the torch they already have, from the oldest one pyproject.toml claims (2.11) on.

.venv runs everything under torch 2.13 with the extension built in place. Here each other venv runs the kernel
tests in a subprocess, with the CPU extension built against its own torch out of tree (mk/kernels.mk:
build/<name>/lib, found through SQUEEZETIME_EXT_DIR): `make test` builds them; outside make, `make
torch-versions` does.
"""
import json
import os
import subprocess
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow  # runs the operator and optimize suites under other torch versions

ROOT = Path(__file__).resolve().parent.parent
KERNEL_TESTS = ("tests/test_ops.py", "tests/test_optimize.py")
# torch 2.11's oneDNN rejected shapes these ran into (failure 4): the golden checkpoints and the classifier too
TORCH_VERSIONS = {  # name: (venv, extension build directory, test files)
    "torch211": (".venv-torch211", "build/torch211/lib",
                 KERNEL_TESTS + ("tests/test_model_golden.py", "tests/test_classifier.py")),
    "torch214": (".venv-cuda", "build/torch214/lib", KERNEL_TESTS),
}
PROBE = """import json, torch
from squeezetime import ops, _build_info
print(json.dumps({"torch": torch.__version__, "built_against": _build_info.TORCH_VERSION,
                  "extension": ops.extension_available(), "error": ops.extension_error()}))"""


def _run(python: Path, ext_dir: Path, args: list, timeout: float) -> subprocess.CompletedProcess:
    env = {**os.environ, "SQUEEZETIME_EXT_DIR": str(ext_dir)}
    env.pop("PYTHONPATH", None)  # squeezetime from this checkout (the working directory), nothing of .venv's
    return subprocess.run([str(python), *args], capture_output=True, text=True, timeout=timeout, cwd=ROOT, env=env)


@pytest.mark.timeout(1800)
@pytest.mark.parametrize("name", sorted(TORCH_VERSIONS))
def test_kernel_tests_pass_under_torch(name):
    venv, ext_dir, files = TORCH_VERSIONS[name]
    python, ext_dir = ROOT / venv / "bin" / "python", ROOT / ext_dir
    if not python.exists() or not (ext_dir / "squeezetime").is_dir():
        pytest.skip(f"{venv} or its out-of-tree extension {ext_dir.relative_to(ROOT)} is missing: "
                    "run `make torch-versions` (make test does)")
    probe = _run(python, ext_dir, ["-c", PROBE], timeout=300)
    assert probe.returncode == 0, probe.stderr[-3000:]
    loaded = json.loads(probe.stdout.strip().splitlines()[-1])
    assert loaded["extension"], f"the extension did not load under torch {loaded['torch']}: {loaded['error']}"
    assert loaded["built_against"] == loaded["torch"], loaded  # stale build: `make torch-versions` rebuilds it

    proc = _run(python, ext_dir, ["-m", "pytest", "-q", "-p", "no:cacheprovider", "-rfE", *files], timeout=1700)
    summary = [line for line in proc.stdout.splitlines() if line.startswith(("FAILED", "ERROR"))]
    assert proc.returncode == 0, (f"under torch {loaded['torch']}: " + "\n".join(summary or [proc.stdout[-3000:]])
                                  + proc.stderr[-2000:])
