"""Where a ``tritonserver`` lives and what its models need to run: the binary (the nvidia-pytriton wheel,
``$SQUEEZETIME_TRITONSERVER``, the project's ``.venv-triton``, PATH, the NGC container), the interpreter whose
environment runs the models, the python backend stub of the wheel's layout, and the server's environment.
"""
from __future__ import annotations

import glob
import importlib.util
import os
import shutil
import subprocess
import sys
import sysconfig
from dataclasses import dataclass
from pathlib import Path

from ...errors import SqueezeTimeError

ENV_BINARY = "SQUEEZETIME_TRITONSERVER"
PROJECT_ROOT = Path(__file__).resolve().parents[3]


class TritonServerError(SqueezeTimeError, RuntimeError):
    """tritonserver cannot be found, cannot start, or a model of the repository cannot load."""


@dataclass(frozen=True)
class TritonInstall:
    """Where a tritonserver lives. ``pytriton_root`` is set for the nvidia-pytriton wheel's layout."""

    binary: Path
    pytriton_root: Path | None = None  # .../site-packages/pytriton/tritonserver
    libs: Path | None = None           # .../site-packages/nvidia_pytriton.libs

    def describe(self) -> str:
        return f"{self.binary}" + (" (nvidia-pytriton wheel)" if self.pytriton_root else "")


def pytriton_install(root: Path) -> TritonInstall | None:
    """The nvidia-pytriton wheel's tritonserver under ``root`` (.../pytriton/tritonserver), or None."""
    binary = root / "bin" / "tritonserver"
    if not binary.is_file():
        return None
    libs = root.parent.parent / "nvidia_pytriton.libs"
    return TritonInstall(binary, root, libs if libs.is_dir() else None)


def from_binary(path: Path) -> TritonInstall:
    """The install a tritonserver binary belongs to (the nvidia-pytriton wheel's layout recognised)."""
    path = path.resolve()
    if path.parent.name == "bin" and path.parent.parent.name == "tritonserver" \
            and path.parent.parent.parent.name == "pytriton":
        return pytriton_install(path.parent.parent) or TritonInstall(path)
    return TritonInstall(path)


def candidate_installs() -> list[tuple[str, Path]]:
    """Places searched for tritonserver, in order: (how it was found, path)."""
    found: list[tuple[str, Path]] = []
    if os.environ.get(ENV_BINARY):
        found.append((f"${ENV_BINARY}", Path(os.environ[ENV_BINARY])))
    spec = importlib.util.find_spec("pytriton") if _safe_find("pytriton") else None
    if spec and spec.submodule_search_locations:
        for loc in spec.submodule_search_locations:
            found.append(("nvidia-pytriton in this environment", Path(loc) / "tritonserver" / "bin" / "tritonserver"))
    for base in (PROJECT_ROOT, Path.cwd()):
        for binary in sorted(glob.glob(str(base / ".venv-triton" / "lib" / "python3*" / "site-packages" / "pytriton"
                                           / "tritonserver" / "bin" / "tritonserver"))):
            found.append((".venv-triton (make triton-setup)", Path(binary)))
    on_path = shutil.which("tritonserver")
    if on_path:
        found.append(("PATH", Path(on_path)))
    found.append(("NGC container default", Path("/opt/tritonserver/bin/tritonserver")))
    return found


def _safe_find(name: str) -> bool:
    try:
        return importlib.util.find_spec(name) is not None
    except (ImportError, ValueError):
        return False


def find_tritonserver(binary: str | os.PathLike | None = None) -> TritonInstall:
    """Locate tritonserver: ``binary``, ``$SQUEEZETIME_TRITONSERVER``, the nvidia-pytriton wheel (this
    environment, then the project's ``.venv-triton``), ``tritonserver`` on PATH, ``/opt/tritonserver``."""
    if binary is not None:
        path = Path(binary)
        if not path.is_file():
            raise TritonServerError(f"tritonserver binary {path} does not exist")
        return from_binary(path)
    tried = []
    for how, path in candidate_installs():
        tried.append(f"{how}: {path}")
        if path.is_file() and os.access(path, os.X_OK):
            return from_binary(path)
    raise TritonServerError("no tritonserver found. On a CPU host install the serving extra "
                            "(pip install 'squeezetime[serve]', or `make triton-setup` which fills .venv-triton); on "
                            f"a GPU host use the NGC container or put tritonserver on PATH; or set ${ENV_BINARY}. "
                            "Tried: " + "; ".join(tried))


def model_python(install: TritonInstall) -> Path:
    """The interpreter whose environment runs the models: the one that holds the nvidia-pytriton wheel.

    The wheel's python backend stub is built against numpy 1.x (the wheel pins numpy<2): a numpy 2
    environment passes inputs but returns empty output tensors. So the models run where the wheel is.
    Outside the wheel's layout (PATH, NGC container) it is this interpreter.
    """
    root = install.pytriton_root
    if root is not None:
        site = root.parent.parent  # .../lib/python3.X/site-packages
        for candidate in (site.parent.parent.parent / "bin" / "python", site.parent.parent.parent / "bin" / "python3"):
            if candidate.is_file():
                return candidate
    return Path(sys.executable)


def source_root() -> Path | None:
    """The checkout holding this package when it runs from source (editable install), else None."""
    root = Path(__file__).resolve().parents[3]
    return root if (root / "setup.py").is_file() and (root / "squeezetime" / "__init__.py").is_file() else None


def python_libdir(python: Path) -> str:
    """Where ``python``'s libpython lives (sysconfig LIBDIR), asked of that interpreter."""
    if python == Path(sys.executable):
        return sysconfig.get_config_var("LIBDIR") or ""
    out = subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_config_var('LIBDIR'))"],
                         capture_output=True, text=True, timeout=60)
    return out.stdout.strip()


def python_version(python: Path) -> str:
    """``python``'s "major.minor"."""
    out = subprocess.run([str(python), "-c", "import sys; print('%d.%d' % sys.version_info[:2])"],
                         capture_output=True, text=True, timeout=60)
    return out.stdout.strip()


def python_backend_dir(install: TritonInstall, python: Path, workdir: Path) -> Path | None:
    """For the pytriton layout: ``workdir/backends`` whose python/ holds symlinks to the wheel's python backend
    and the stub for ``python``'s version (a copied stub loses its library path). None for other layouts."""
    root = install.pytriton_root
    if root is None:
        return None
    version = f"{sys.version_info.major}.{sys.version_info.minor}" if python == Path(sys.executable) \
        else python_version(python)
    stub = root / "python_backend_stubs" / version / "triton_python_backend_stub"
    if not stub.is_file():
        raise TritonServerError(f"the nvidia-pytriton wheel has no python backend stub for Python {version} "
                                f"({stub})")
    backends = workdir / "backends"
    python_dir = backends / "python"
    python_dir.mkdir(parents=True, exist_ok=True)
    for src in (root / "backends" / "python" / "libtriton_python.so",
                root / "backends" / "python" / "triton_python_backend_utils.py", stub):
        link = python_dir / src.name
        if not link.exists():
            link.symlink_to(src)
    return backends


def server_environment(install: TritonInstall, python: Path) -> dict[str, str]:
    """This process's environment, set up for tritonserver and the models' Python ``python``."""
    env = dict(os.environ)
    # The stub embeds libpython: this interpreter's, first (else a system libpython 3.11.x may load against
    # another 3.11.y stdlib); then the wheel's bundled libraries. The venv's bin dir first on PATH is how the
    # stub's embedded Python finds this environment's packages (torch, squeezetime).
    libdirs = [python_libdir(python)]
    if install.libs is not None:
        libdirs.append(str(install.libs))
    if env.get("LD_LIBRARY_PATH"):
        libdirs.append(env["LD_LIBRARY_PATH"])
    env["LD_LIBRARY_PATH"] = os.pathsep.join(d for d in libdirs if d)
    env["PATH"] = os.pathsep.join([str(python.parent), env.get("PATH", "/usr/bin:/bin")])
    source = source_root()
    if source is not None:  # a source checkout (editable install): the server's Python sees the same code
        # (the stub's embedded Python ignores PYTHONPATH; the repository's model.py reads this variable)
        env["SQUEEZETIME_PYTHONPATH"] = str(source)
        env["PYTHONPATH"] = os.pathsep.join(p for p in (str(source), env.get("PYTHONPATH")) if p)
    env.setdefault("OMP_NUM_THREADS", str(os.cpu_count() or 1))
    return env


__all__ = ["ENV_BINARY", "TritonInstall", "TritonServerError", "candidate_installs", "find_tritonserver",
           "from_binary", "model_python", "python_backend_dir", "python_libdir", "python_version", "pytriton_install",
           "server_environment", "source_root"]
