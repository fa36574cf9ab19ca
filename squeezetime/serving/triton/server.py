"""Start and stop a real ``tritonserver``: the binary of the ``nvidia-pytriton`` wheel on CPU hosts, or one on PATH.

The process is run by ``serving.supervisor.ManagedProcess``: its own process group, every wait bounded,
stopped at interpreter exit. Stopping sends SIGINT, waits for a clean exit, then SIGKILLs the group, and
removes the python backend's ``/dev/shm`` regions that it left (each server gets its own region prefix, so
only its own regions are touched).

A launcher killed outright (SIGKILL, OOM) cannot clean up: tritonserver dies with it (parent-death signal),
its python stubs notice their dead parent and exit within seconds, but the work directory (and, when the
stubs were killed too, their shm regions) stay. ``start()`` first removes such leftovers of dead launchers
(``clean_stale``): regions whose prefix names a dead launcher pid, and ``squeezetime-triton-*`` /
``squeezetime-demo-repo-*`` temp directories whose owner file names a dead process, never anything a live
process still mentions.
"""
from __future__ import annotations

import glob
import logging
import os
import re
import shutil
import signal
import subprocess
import sys
import sysconfig
import urllib.error
import urllib.request
import uuid
from dataclasses import dataclass
from pathlib import Path

from ...errors import SqueezeTimeError
from ..ports import free_port, port_in_use
from .shm import SHM_CHECKS, ShmPlan
from .shm import plan as shm_plan
from ..supervisor import (ManagedProcess, ProcessError, ProcessExited, clean_stale_dirs, first_line_with,  # noqa: F401
                          group_pids, owned_tempdir, pid_alive, processes_mentioning)

logger = logging.getLogger("squeezetime")
ENV_BINARY = "SQUEEZETIME_TRITONSERVER"
SHM_PREFIX = "triton_python_backend_shm_region_"
WORKDIR_PREFIX = "squeezetime-triton-"
DEMO_REPO_PREFIX = "squeezetime-demo-repo-"  # `squeezetime serve --demo`'s repository (an owned temp dir too)
_SHM_OWNER = re.compile(re.escape(SHM_PREFIX) + r"st(\d+)_([0-9a-f]+)_")  # ...st<launcher pid>_<uuid>_
DEFAULT_START_TIMEOUT = 180.0
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


def _pytriton_install(root: Path) -> TritonInstall | None:
    binary = root / "bin" / "tritonserver"
    if not binary.is_file():
        return None
    libs = root.parent.parent / "nvidia_pytriton.libs"
    return TritonInstall(binary, root, libs if libs.is_dir() else None)


def _from_binary(path: Path) -> TritonInstall:
    path = path.resolve()
    if path.parent.name == "bin" and path.parent.parent.name == "tritonserver" \
            and path.parent.parent.parent.name == "pytriton":
        return _pytriton_install(path.parent.parent) or TritonInstall(path)
    return TritonInstall(path)


def candidate_installs() -> list[tuple[str, Path]]:
    """Places searched for tritonserver, in order: (how it was found, path)."""
    found: list[tuple[str, Path]] = []
    if os.environ.get(ENV_BINARY):
        found.append((f"${ENV_BINARY}", Path(os.environ[ENV_BINARY])))
    import importlib.util
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
    import importlib.util
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
        return _from_binary(path)
    tried = []
    for how, path in candidate_installs():
        tried.append(f"{how}: {path}")
        if path.is_file() and os.access(path, os.X_OK):
            return _from_binary(path)
    raise TritonServerError("no tritonserver found. On a CPU host install the serving extra "
                            "(pip install 'squeezetime[serve]', or `make triton-setup` which fills .venv-triton); on "
                            f"a GPU host use the NGC container or put tritonserver on PATH; or set ${ENV_BINARY}. "
                            "Tried: " + "; ".join(tried))


def remove_shm_regions(prefix: str) -> list[str]:
    """Remove ``/dev/shm/<prefix>*`` (the python backend's regions of one server); return what was removed."""
    removed = []
    for path in glob.glob(os.path.join("/dev/shm", glob.escape(prefix) + "*")):
        try:
            os.unlink(path)
            removed.append(path)
        except FileNotFoundError:
            pass
    return removed


def stale_shm_prefixes() -> dict[str, list[str]]:
    """Region prefixes of servers whose launcher (the pid in the prefix) is dead and that no live process
    mentions (tritonserver names its prefix on its command line, each stub its region): {prefix: [paths]}.
    Only this user's files. A reused launcher pid keeps them (the work directory's owner file catches that)."""
    groups: dict[str, list[str]] = {}
    for path in glob.glob(os.path.join("/dev/shm", glob.escape(SHM_PREFIX) + "st*")):
        m = _SHM_OWNER.match(os.path.basename(path))
        try:
            mine = os.lstat(path).st_uid == os.getuid()
        except OSError:
            continue
        if m and mine:
            groups.setdefault(m.group(0), []).append(path)
    return {prefix: paths for prefix, paths in groups.items()
            if not pid_alive(int(_SHM_OWNER.match(prefix).group(1))) and not processes_mentioning(prefix)}


GAVE_UP = "error: creating server:"  # tritonserver's last line when it cannot start (e.g. a model failed to load)


def clean_stale(tmpdir: str | os.PathLike | None = None) -> list[str]:
    """Remove what killed launchers left: their work and demo-repository temp directories (owner dead, no live
    process mentions them; the shm regions named in the owner file go with them) and shm regions of dead
    launchers. Returns the removed paths."""
    removed: list[str] = []

    def regions_of(path: Path, owner: dict) -> None:
        prefix = owner.get("shm_prefix")
        if isinstance(prefix, str) and prefix.startswith(SHM_PREFIX) and not processes_mentioning(prefix):
            removed.extend(remove_shm_regions(prefix))

    removed += [str(p) for p in clean_stale_dirs((WORKDIR_PREFIX, DEMO_REPO_PREFIX), tmpdir, on_remove=regions_of)]
    for prefix in stale_shm_prefixes():
        removed.extend(remove_shm_regions(prefix))
    return removed


def check_engines(repository: Path) -> None:
    """A TensorRT engine loads only with the TensorRT (and GPU) that built it: refuse a mismatch up front,
    with the reason, rather than let the server fail to load the model."""
    for config in sorted(repository.glob("*/config.pbtxt")):
        if re.search(r'platform\s*:\s*"tensorrt_plan"', config.read_text(encoding="utf-8")):
            from ...export.tensorrt import check_engine_compatible

            try:
                check_engine_compatible(config.parent)
            except SqueezeTimeError as e:
                raise TritonServerError(f"will not serve {config.parent.name}: {e}") from e


class TritonServer:
    """A running ``tritonserver --model-repository REPO`` bound to loopback (or ``host``) on free ports.

        with TritonServer("repo") as server:
            print(server.grpc_url)

    ``start()`` returns when the server and all its models are ready, or raises ``TritonServerError`` with
    the server's log tail (within ``start_timeout`` seconds). ``stop()`` always leaves no process and no
    shared-memory region behind.
    """

    def __init__(self, repository: str | os.PathLike, *, host: str = "127.0.0.1", grpc_port: int | None = None,
                 http_port: int | None = None, metrics_port: int | None = None, binary: str | None = None,
                 python: str | None = None, start_timeout: float = DEFAULT_START_TIMEOUT,
                 log_path: str | os.PathLike | None = None, log_verbose: int = 0,
                 extra_args: list[str] | None = None, model_control_explicit: bool = False,
                 shm_check: str = "error"):
        self.repository = Path(repository).resolve()
        if not (self.repository.is_dir() and any(self.repository.glob("*/config.pbtxt"))):
            raise TritonServerError(f"{self.repository} is not a model repository (no */config.pbtxt); write one "
                                    "with `squeezetime triton-repo`")
        check_engines(self.repository)
        self.host = host
        self.grpc_port = grpc_port or free_port(host)
        self.http_port = http_port or free_port(host)
        self.metrics_port = metrics_port or free_port(host)
        self.install = find_tritonserver(binary)
        self.python = Path(python) if python else model_python(self.install)
        self.start_timeout = start_timeout
        self.extra_args = list(extra_args or [])
        self.model_control_explicit = model_control_explicit
        self.log_verbose = log_verbose
        if shm_check not in SHM_CHECKS:
            raise TritonServerError(f"shm_check must be one of {SHM_CHECKS}, got {shm_check!a}")
        self.shm_check = shm_check
        self.shm_plan: ShmPlan | None = None  # the repository's worst case in /dev/shm, known at start()
        self.shm_prefix = f"{SHM_PREFIX}st{os.getpid()}_{uuid.uuid4().hex[:8]}_"
        # the owner file lets a later launcher remove this directory (and the regions) if this one is killed
        self._workdir = owned_tempdir(WORKDIR_PREFIX, shm_prefix=self.shm_prefix)
        self.stale_removed: list[str] = []  # what start() removed of killed launchers
        self.log_path = Path(log_path) if log_path else self._workdir / "tritonserver.log"
        self.supervisor: ManagedProcess | None = None
        self.pgid: int | None = None

    @property
    def process(self) -> subprocess.Popen | None:
        """The running tritonserver's Popen (None when not started or stopped)."""
        return self.supervisor.popen if self.supervisor is not None else None

    # -- endpoints ------------------------------------------------------------------------------------------
    @property
    def grpc_url(self) -> str:
        return f"{self.host}:{self.grpc_port}"

    @property
    def http_url(self) -> str:
        return f"{self.host}:{self.http_port}"

    @property
    def metrics_url(self) -> str:
        return f"http://{self.host}:{self.metrics_port}/metrics"

    # -- command line ---------------------------------------------------------------------------------------
    def _backend_dir(self) -> Path | None:
        """For the pytriton layout: backends/python/ with symlinks (a copied stub loses its library path)."""
        root = self.install.pytriton_root
        if root is None:
            return None
        version = f"{sys.version_info.major}.{sys.version_info.minor}" if self.python == Path(sys.executable) \
            else _python_version(self.python)
        stub = root / "python_backend_stubs" / version / "triton_python_backend_stub"
        if not stub.is_file():
            raise TritonServerError(f"the nvidia-pytriton wheel has no python backend stub for Python {version} "
                                    f"({stub})")
        backends = self._workdir / "backends"
        python_dir = backends / "python"
        python_dir.mkdir(parents=True, exist_ok=True)
        for src in (root / "backends" / "python" / "libtriton_python.so",
                    root / "backends" / "python" / "triton_python_backend_utils.py", stub):
            link = python_dir / src.name
            if not link.exists():
                link.symlink_to(src)
        return backends

    def command(self) -> list[str]:
        cmd = [str(self.install.binary), f"--model-repository={self.repository}",
               f"--http-address={self.host}", f"--http-port={self.http_port}",
               f"--grpc-address={self.host}", f"--grpc-port={self.grpc_port}",
               f"--metrics-address={self.host}", f"--metrics-port={self.metrics_port}",
               "--allow-gpu-metrics=false", "--exit-timeout-secs=5",
               "--disable-auto-complete-config",  # configs are complete; skips a stub (torch import) per model
               f"--log-verbose={self.log_verbose}",
               f"--backend-config=python,shm-region-prefix-name={self.shm_prefix}",
               # clips are 2.4 MB each: start each stub's region big enough for a full batch (sparse in tmpfs)
               "--backend-config=python,shm-default-byte-size=33554432",
               "--backend-config=python,shm-growth-byte-size=33554432"]
        backends = self._backend_dir()
        if backends is not None:  # CPU build of the wheel: no CUDA pools
            cmd += [f"--backend-directory={backends}", "--pinned-memory-pool-byte-size=0",
                    "--cuda-memory-pool-byte-size=0:0"]
        if self.model_control_explicit:
            cmd += ["--model-control-mode=explicit", "--load-model=*"]
        return cmd + self.extra_args

    def check_shared_memory(self) -> None:
        """Know the repository's worst case in /dev/shm before starting; refuse (``shm_check="error"``) or warn
        when /dev/shm cannot hold it, rather than fail under the first large videos."""
        if self.shm_check == "off":
            return
        self.shm_plan = shm_plan(self.repository)
        problem = self.shm_plan.problem()
        if problem and self.shm_check == "error":
            raise TritonServerError(f"{problem}; or start anyway with shm_check='warn' (squeezetime serve "
                                    "--shm-check warn)")
        if problem:
            logger.warning("squeezetime: %s", problem)

    def environment(self) -> dict[str, str]:
        env = dict(os.environ)
        # The stub embeds libpython: this interpreter's, first (else a system libpython 3.11.x may load against
        # another 3.11.y stdlib); then the wheel's bundled libraries. The venv's bin dir first on PATH is how the
        # stub's embedded Python finds this environment's packages (torch, squeezetime).
        libdirs = [_python_libdir(self.python)]
        if self.install.libs is not None:
            libdirs.append(str(self.install.libs))
        if env.get("LD_LIBRARY_PATH"):
            libdirs.append(env["LD_LIBRARY_PATH"])
        env["LD_LIBRARY_PATH"] = os.pathsep.join(d for d in libdirs if d)
        env["PATH"] = os.pathsep.join([str(self.python.parent), env.get("PATH", "/usr/bin:/bin")])
        source = source_root()
        if source is not None:  # a source checkout (editable install): the server's Python sees the same code
            # (the stub's embedded Python ignores PYTHONPATH; the repository's model.py reads this variable)
            env["SQUEEZETIME_PYTHONPATH"] = str(source)
            env["PYTHONPATH"] = os.pathsep.join(p for p in (str(source), env.get("PYTHONPATH")) if p)
        env.setdefault("OMP_NUM_THREADS", str(os.cpu_count() or 1))
        return env

    # -- life cycle -----------------------------------------------------------------------------------------
    def start(self) -> "TritonServer":
        if self.supervisor is not None:
            return self
        self.stale_removed = clean_stale()
        self.check_shared_memory()
        for name, port in (("gRPC", self.grpc_port), ("HTTP", self.http_port), ("metrics", self.metrics_port)):
            if port_in_use(port, self.host):
                raise TritonServerError(f"{name} port {self.host}:{port} is already in use")
        self.check_python()
        proc = ManagedProcess(self.command(), env=self.environment(), cwd=self._workdir, log_path=self.log_path,
                              name="tritonserver", stop_signal=signal.SIGINT, tail=self.log_tail)
        proc.add_cleanup(remove_shm_regions, self.shm_prefix)
        self.supervisor = proc
        try:
            proc.start()
            self.pgid = proc.pgid
            self.wait_ready(self.start_timeout)
        except ProcessError as e:
            self.stop()
            raise TritonServerError(str(e)) from e
        except BaseException:
            self.stop()
            raise
        return self

    def check_python(self) -> None:
        """The models run in ``self.python``'s environment: it must import torch, av and squeezetime."""
        code = ("import importlib.util as u, sys; "
                "print(' '.join(m for m in ('numpy', 'torch', 'av', 'squeezetime') if u.find_spec(m) is None))")
        try:
            out = subprocess.run([str(self.python), "-c", code], capture_output=True, text=True, timeout=60,
                                 env=self.environment())
        except (OSError, subprocess.TimeoutExpired) as e:
            raise TritonServerError(f"cannot run the models' Python {self.python}: {e}") from e
        missing = out.stdout.split()
        if out.returncode != 0 or missing:
            raise TritonServerError(f"the models' Python {self.python} lacks {', '.join(missing) or out.stderr[-300:]}"
                                    "; install squeezetime (with torch and av) into the environment that holds "
                                    "nvidia-pytriton, or pass python=/--python")

    def ready(self) -> bool:
        """One readiness probe: ``GET /v2/health/ready`` answers 200 (the server and all its models)."""
        try:
            with urllib.request.urlopen(f"http://{self.http_url}/v2/health/ready", timeout=2) as r:
                return r.status == 200
        except (urllib.error.URLError, ConnectionError, OSError):
            return False

    def wait_ready(self, timeout: float) -> None:
        """Wait until ready; a model that cannot load stops tritonserver, which ends the wait at once. On
        failure the server is stopped and TritonServerError quotes its log."""
        try:
            self.supervisor.wait_ready(self.ready, timeout, failure=self.gave_up)
        except ProcessError as e:
            hint = " (a model that cannot load stops it)" if isinstance(e, ProcessExited) else ""
            raise TritonServerError(f"{e.message}{hint}\n{e.tail}") from e

    def gave_up(self) -> str | None:
        """tritonserver's own last word when it cannot start ("error: creating server: ..."), or None. Seen in
        CI: after that line (a model failed to load) the process hung on its way out for minutes, so the wait
        ends on the line, not only on the exit."""
        return first_line_with(self.log_path, (GAVE_UP,))

    def is_running(self) -> bool:
        return self.supervisor is not None and self.supervisor.poll() is None

    def wait(self) -> int:
        """Block until the server exits on its own; return its status."""
        return self.supervisor.wait()

    def stop(self, timeout: float = 15.0) -> int | None:
        """SIGINT, wait up to ``timeout`` s, then SIGKILL the process group; remove its shm regions."""
        proc, self.supervisor = self.supervisor, None
        if proc is None:
            return None
        try:
            return proc.stop(timeout, kill_timeout=10.0)
        except ProcessError as e:
            raise TritonServerError(str(e)) from e

    def cleanup(self) -> None:
        """stop() and remove the work directory (backend symlinks; the log unless it was put elsewhere)."""
        self.stop()
        shutil.rmtree(self._workdir, ignore_errors=True)

    def log_tail(self, lines: int = 25) -> str:
        """The server's errors (harmless no-GPU lines left out), else its last lines; and where the log is."""
        try:
            text = self.log_path.read_text(errors="replace").splitlines()
        except OSError:
            return "(no server log)"
        noise = ("pinned memory", "CudaDriverHelper", "NVML", "DCGM", "cuda", "CUDA", "GPU metrics")
        useful = [line for line in text if not any(n in line for n in noise) and not line.startswith(("+", "|"))]
        errors = [line.replace("\\n", "\n    ") for line in useful
                  if line[:1] == "E" or "rror" in line or "failed" in line]
        shown = errors[-lines:] if errors else useful[-lines:]
        return f"server log {self.log_path}:\n" + "\n".join("  " + line for line in shown)

    def __enter__(self) -> "TritonServer":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.cleanup()

    def __del__(self):
        if getattr(self, "supervisor", None) is not None:
            try:
                self.stop()
            except Exception:  # noqa: BLE001 - never raise from a finaliser
                pass


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


def _python_libdir(python: Path) -> str:
    if python == Path(sys.executable):
        return sysconfig.get_config_var("LIBDIR") or ""
    out = subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_config_var('LIBDIR'))"],
                         capture_output=True, text=True, timeout=60)
    return out.stdout.strip()


def _python_version(python: Path) -> str:
    out = subprocess.run([str(python), "-c", "import sys; print('%d.%d' % sys.version_info[:2])"],
                         capture_output=True, text=True, timeout=60)
    return out.stdout.strip()


__all__ = ["ENV_BINARY", "TritonInstall", "TritonServer", "TritonServerError", "clean_stale", "find_tritonserver",
           "free_port", "group_pids", "remove_shm_regions", "stale_shm_prefixes"]
