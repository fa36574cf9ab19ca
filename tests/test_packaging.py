"""Packaging: a wheel built from this repository carries its C++ extension and data files, and works on its own;
the requirements files of this project's venvs agree with the dependencies pyproject.toml declares.

The wheel is built the way the README says (`pip wheel --no-build-isolation`, against the torch of the test's
interpreter) from a copy of the repository, installed into a fresh venv that has the same torch version and
nothing else, and then `squeezetime predict --demo` classifies a generated video there, from outside the checkout.
"""
from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import time
import tomllib
import zipfile
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parent.parent
VENV_CUDA_PY = ROOT / ".venv-cuda" / "bin" / "python"
SKIP_DIRS = {".git", "build", "dist", "__pycache__", ".pytest_cache"}


def copy_source(dest: Path) -> None:
    """The files git would see (tracked + untracked, not ignored): no venvs, build outputs, built .so files or
    _build_info.py, so the build does not write into the checkout and starts from nothing."""
    listed = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"], cwd=ROOT,
                            capture_output=True, check=False)
    if listed.returncode == 0:
        names = [n for n in listed.stdout.decode().split("\0") if n]
    else:  # not a git checkout: everything except what the build makes
        names = [str(p.relative_to(ROOT)) for p in ROOT.rglob("*")
                 if p.is_file() and not (set(p.relative_to(ROOT).parts) & SKIP_DIRS)
                 and not p.relative_to(ROOT).parts[0].startswith(".venv") and p.suffix != ".so"]
    for name in names:
        src = ROOT / name
        if src.is_file():  # a tracked file deleted in the working tree is skipped
            (dest / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dest / name, follow_symlinks=False)


def run(cmd: list[str], timeout: float, **kw) -> subprocess.CompletedProcess:
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, **kw)
    assert proc.returncode == 0, f"{' '.join(map(str, cmd))}\n{proc.stdout[-5000:]}\n{proc.stderr[-5000:]}"
    return proc


def clean_env(**extra: str) -> dict:
    """No PYTHONPATH and a cwd outside the checkout: the venv must not see the repository's squeezetime."""
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV")}
    env.update(extra)
    return env


@pytest.mark.slow  # builds a wheel and installs it into a fresh venv
@pytest.mark.timeout(1500)  # measured 3.7 min while other suites shared the 2 cores (CPU time 2.7 min)
def test_wheel_installs_into_fresh_venv_with_extension_and_data(tmp_path):
    import torch

    from squeezetime.synthetic import CLASSES, make_video

    src, dist, venv = tmp_path / "src", tmp_path / "dist", tmp_path / "venv"
    src.mkdir()
    copy_source(src)
    assert (src / "pyproject.toml").is_file() and (src / "setup.py").is_file()

    # The fresh venv (CPU torch, ~20-40 s) is made while the wheel compiles (~1-1.5 min on 2 cores).
    start = time.monotonic()
    torch_pin = f"torch=={torch.__version__}"
    make_venv = subprocess.Popen(
        f"{sys.executable} -m venv {venv} && {venv}/bin/python -m pip install -q {torch_pin}", shell=True,
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=clean_env(), cwd=tmp_path)
    try:
        build = run([sys.executable, "-m", "pip", "wheel", "-v", "--no-build-isolation", "--no-deps",
                     "-w", str(dist), str(src)], timeout=900, env=clean_env(MAX_JOBS="2"), cwd=tmp_path)
        built = time.monotonic()
        venv_out, _ = make_venv.communicate(timeout=600)
    finally:
        if make_venv.poll() is None:
            make_venv.kill()
            make_venv.wait()
    assert make_venv.returncode == 0, f"fresh venv with {torch_pin} failed:\n{venv_out[-5000:]}"
    log = build.stdout + build.stderr  # pip -v passes the build's output on (stderr)
    assert f"squeezetime: building the CPU extension only, against torch {torch.__version__}" in log \
        or f"squeezetime: building the CPU and CUDA extensions against torch {torch.__version__}" in log, log[-3000:]

    wheels = list(dist.glob("squeezetime-*.whl"))
    assert len(wheels) == 1, wheels
    names = set(zipfile.ZipFile(wheels[0]).namelist())
    for expected in ("squeezetime/_build_info.py",
                     "squeezetime/labels/k400.txt", "squeezetime/labels/k600.txt", "squeezetime/labels/hmdb51.txt",
                     "squeezetime/synthetic/demo_k400_w025_synthetic8.pth",
                     "squeezetime/serving/triton/templates/squeezetime/config.pbtxt",
                     "squeezetime/serving/triton/templates/squeezetime/1/model.py",
                     "squeezetime/serving/triton/templates/squeezetime_video/config.pbtxt",
                     "squeezetime/serving/triton/templates/squeezetime_video/1/model.py",
                     "squeezetime/serving/torchserve/config.properties",
                     "squeezetime/serving/torchserve/squeezetime_handler.py"):
        assert expected in names, f"{expected} missing from {wheels[0].name}"
    assert any(re.fullmatch(r"squeezetime/_C\..*\.so", n) for n in names), sorted(names)
    assert not [n for n in names if "__pycache__" in n or n.endswith(".pyc")]

    ready = time.monotonic()
    run([str(venv / "bin" / "python"), "-m", "pip", "install", "-q", str(wheels[0])], timeout=300,
        env=clean_env(), cwd=tmp_path)
    installed = time.monotonic()

    label = 4  # rotating clockwise
    video = tmp_path / "clip.mp4"
    video.write_bytes(make_video(label, seed=20240611, container="mp4"))
    predict = run([str(venv / "bin" / "squeezetime"), "predict", str(video), "--demo", "--topk", "3"],
                  timeout=180, env=clean_env(), cwd=tmp_path)
    line = next((l for l in predict.stdout.splitlines() if l.startswith(f"{video}: ")), None)
    assert line is not None, predict.stdout + predict.stderr
    top = re.match(rf"{re.escape(str(video))}: (.+?) \(", line)
    assert top and top.group(1) == CLASSES[label], line

    probe = run([str(venv / "bin" / "python"), "-c",
                 "import squeezetime, torch; from squeezetime import ops; from squeezetime import _build_info as b; "
                 "print(ops.extension_available()); print(squeezetime.__file__); "
                 "print(b.TORCH_VERSION == torch.__version__, b.EXTENSIONS)"],
                timeout=120, env=clean_env(), cwd=tmp_path)
    available, where, info = probe.stdout.strip().splitlines()[-3:]
    assert available == "True", probe.stdout + probe.stderr
    assert where.startswith(str(venv)), where  # the installed wheel, not the checkout
    assert info.startswith("True"), info
    shutil.rmtree(venv, ignore_errors=True)  # ~0.9 GB; pytest keeps the last three tmp dirs
    print(f"packaging: wheel built in {built - start:.0f} s, fresh venv ready at {ready - start:.0f} s, wheel "
          f"installed in {installed - ready:.0f} s, predict + probe {time.monotonic() - installed:.0f} s")


def decision_line(python: Path, **env: str) -> str:
    """The line setup.py prints about which extensions it will build (`setup.py --name` builds nothing)."""
    proc = run([str(python), "setup.py", "--name"], timeout=180, cwd=ROOT, env=clean_env(**env))
    lines = [l for l in proc.stdout.splitlines() if l.startswith("squeezetime: building")]
    assert len(lines) == 1, proc.stdout
    return lines[0]


@pytest.mark.slow
@pytest.mark.timeout(300)
@pytest.mark.skipif(not VENV_CUDA_PY.exists(), reason="no .venv-cuda (CUDA build of torch): run `make venv-cuda`")
def test_cuda_torch_without_gpu_builds_cpu_only_unless_arch_list_given():
    """torch with CUDA + a CUDA toolkit + no GPU: cpp_extension would fail (IndexError in _get_cuda_arch_flags)
    when nothing names an architecture; setup.py then builds the CPU extension only and says why."""
    no_gpu = {"TORCH_CUDA_ARCH_LIST": "", "CUDA_VISIBLE_DEVICES": ""}
    line = decision_line(VENV_CUDA_PY, **no_gpu)
    assert "CPU extension only" in line and "TORCH_CUDA_ARCH_LIST is unset" in line, line
    import runpy

    cuda_home = runpy.run_path(str(ROOT / "csrc" / "tools" / "find_cuda_home.py"))["find_cuda_home"]()
    if cuda_home:  # the toolkit root that cpp_extension itself will use (it reads CUDA_HOME once, on import)
        line = decision_line(VENV_CUDA_PY, **{**no_gpu, "TORCH_CUDA_ARCH_LIST": "9.0"})
        assert "CPU and CUDA extensions" in line and "architectures 9.0 from TORCH_CUDA_ARCH_LIST" in line, line
        assert f"CUDA_HOME={cuda_home}," in line, line


# -- requirements/*.txt mirror pyproject.toml ------------------------------------------------------------------------
# Each file's `# mirrors: GROUP... [except NAME...] [plus NAME...]` line names the pyproject.toml groups it installs
# (dependencies, build-system, [extra]), the packages of those groups that its venv leaves out, and the packages it
# adds that squeezetime does not declare.
REQUIREMENTS = ROOT / "requirements"
MIRRORS = re.compile(r"^# mirrors: (?P<groups>.*?)(?: except (?P<left_out>.*?))?(?: plus (?P<added>.*))?$", re.M)


def by_name(lines: list[str]) -> dict[str, Requirement]:
    return {canonicalize_name(r.name): r for r in map(Requirement, lines)}


def pyproject_groups() -> dict[str, dict[str, Requirement]]:
    toml = tomllib.loads((ROOT / "pyproject.toml").read_text())
    groups = {"dependencies": toml["project"]["dependencies"], "build-system": toml["build-system"]["requires"]}
    groups.update({f"[{name}]": reqs for name, reqs in toml["project"]["optional-dependencies"].items()})
    return {name: by_name(reqs) for name, reqs in groups.items()}


def requirement_lines(path: Path) -> list[str]:
    lines = (line.split("#", 1)[0].strip() for line in path.read_text().splitlines())
    return [line for line in lines if line]


def narrows(pinned: Requirement, declared: Requirement) -> bool:
    """The file allows no version pyproject.toml does not: the same clauses and maybe more, or exact versions
    inside the declared range. Package extras and markers must be the same."""
    if pinned.extras != declared.extras or str(pinned.marker) != str(declared.marker):
        return False
    if set(declared.specifier) <= set(pinned.specifier):
        return True
    exact = [clause.version for clause in pinned.specifier if clause.operator == "=="]
    return bool(exact) and all(declared.specifier.contains(version, prereleases=True) for version in exact)


@pytest.mark.parametrize("path", sorted(REQUIREMENTS.rglob("*.txt")), ids=lambda p: str(p.relative_to(REQUIREMENTS)))
def test_requirements_file_mirrors_pyproject(path):
    header = MIRRORS.search(path.read_text())
    assert header, f"{path}: no '# mirrors: ...' line naming the pyproject.toml groups it installs"
    groups = pyproject_groups()
    declared: dict[str, Requirement] = {}
    for group in header["groups"].split():
        assert group in groups, f"{path}: pyproject.toml has no group {group} (it has {', '.join(groups)})"
        declared.update(groups[group])
    left_out, added = set((header["left_out"] or "").split()), set((header["added"] or "").split())
    assert left_out <= declared.keys(), f"{path}: leaves out {left_out - declared.keys()}, which its groups lack"
    everywhere = {name for group in groups.values() for name in group}
    assert not added & everywhere, f"{path}: adds {added & everywhere}, which pyproject.toml declares"
    installed = by_name(requirement_lines(path))
    expected = declared.keys() - left_out | added
    assert installed.keys() == expected, (f"{path}: only there {sorted(installed.keys() - expected)}, only in "
                                          f"pyproject.toml's groups {sorted(expected - installed.keys())}")
    for name in installed.keys() & declared.keys():
        assert narrows(installed[name], declared[name]), f"{path}: {installed[name]} vs {declared[name]}"
