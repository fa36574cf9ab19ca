"""Start and stop a real ``tritonserver``: the binary of the ``nvidia-pytriton`` wheel on CPU hosts, or one on PATH.

The process is run by ``serving.supervisor.ManagedProcess``: its own process group, every wait bounded,
stopped at interpreter exit. Stopping sends SIGINT, waits for a clean exit, then SIGKILLs the group, and
removes the python backend's ``/dev/shm`` regions that it left (each server gets its own region prefix, so
only its own regions are touched).

What killed launchers left behind is removed first (``leftovers.clean_stale``); where tritonserver lives and
what its models' Python needs is ``install``.
"""
from __future__ import annotations

import logging
import os
import re
import shutil
import signal
import subprocess
import urllib.error
import urllib.request
from pathlib import Path

from ...errors import SqueezeTimeError
from ..leftovers import owned_tempdir
from ..ports import free_port, port_in_use
from ..supervisor import ManagedProcess, ProcessError, ProcessExited, first_line_with
from .install import TritonServerError, find_tritonserver, model_python, python_backend_dir, server_environment
from .leftovers import WORKDIR_PREFIX, clean_stale
from .shm import SHM_CHECKS, ShmPlan, remove_shm_regions, shm_prefix
from .shm import plan as shm_plan

logger = logging.getLogger("squeezetime")
DEFAULT_START_TIMEOUT = 180.0
GAVE_UP = "error: creating server:"  # tritonserver's last line when it cannot start (e.g. a model failed to load)


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
        self.shm_prefix = shm_prefix()
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
        backends = python_backend_dir(self.install, self.python, self._workdir)
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
        """The environment tritonserver and its models run in (``install.server_environment``)."""
        return server_environment(self.install, self.python)

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


__all__ = ["DEFAULT_START_TIMEOUT", "GAVE_UP", "TritonServer", "check_engines"]
