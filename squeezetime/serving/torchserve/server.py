"""Start and stop a real TorchServe for ``.mar`` archives, with its own run directory and bounded waits.

A run directory (default ``~/.cache/squeezetime/torchserve``, or ``--run-dir``) holds everything of one
server: ``config.properties`` (``torchserve.config``: rendered from the template beside it), ``tmp/`` (TMPDIR/TEMP: the
launcher's pid file and the worker sockets), ``logs/`` (LOG_LOCATION and METRICS_LOCATION, plus
``console.log``), ``key_file.json`` when token auth is on, and ``state.json`` (pid, ports, models) that
``stop`` reads. ``start`` returns once every worker of every model is READY, or raises with the reason
found in the server's logs.

The process group (launcher, Java, workers) is run by ``serving.supervisor.ManagedProcess``, detached: the
server outlives the process that started it (``squeezetime torchserve start`` returns), and ``stop`` works
from any process through ``state.json``'s pid (= the process group): SIGTERM to the group (Java shuts its
workers down), then SIGKILL, every wait bounded.

Because the server is detached, killing the process that ran ``start`` (even with SIGKILL) leaves it running
on purpose; ``stop`` still finds it through ``state.json``. When the whole group died instead (SIGKILL of the
group, OOM, reboot), the run directory keeps stale state: the next ``start`` (or ``stop``) sees that the
group is gone and removes ``state.json``, ``key_file.json``, TorchServe's pid file and worker sockets first.

Admission control: ``job_queue_size`` requests may wait per model; beyond that TorchServe answers 503 at once
(instead of queueing without end), and ``max_request_size`` answers 413 from the ``Content-Length`` alone.
"""
from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import asdict, dataclass, field
from pathlib import Path

from ...errors import SqueezeTimeError
from ..ports import free_ports as free_loopback_ports, port_in_use
from ..supervisor import ManagedProcess, ProcessError, first_line_with, group_alive
from .archive import archive_model_name
from .config import (DEFAULT_JOB_QUEUE_SIZE, DEFAULT_MAX_REQUEST_SIZE, DEFAULT_PORTS, log_config_path, render_config,
                     server_config)

LAUNCHER = "import sys; from ts.model_server import start; sys.exit(start())"
PID_FILE = ".model_server.pid"  # Java's pid, written by the launcher into TMPDIR


class TorchServeError(SqueezeTimeError, RuntimeError):
    """TorchServe could not be started, did not become ready, or could not be stopped."""


def default_run_dir() -> Path:
    return Path(os.environ.get("SQUEEZETIME_TORCHSERVE_RUN_DIR",
                               Path.home() / ".cache" / "squeezetime" / "torchserve"))


@dataclass
class ServerInfo:
    run_dir: str
    pid: int  # the launcher's pid = the process group of the launcher, Java and the workers
    ports: dict
    models: list[str]
    model_store: str
    token_auth: bool = False
    extra: dict = field(default_factory=dict)

    @property
    def inference_url(self) -> str:
        return f"http://127.0.0.1:{self.ports['inference']}"

    @property
    def management_url(self) -> str:
        return f"http://127.0.0.1:{self.ports['management']}"

    @property
    def metrics_url(self) -> str:
        return f"http://127.0.0.1:{self.ports['metrics']}"

    @property
    def grpc_address(self) -> str:
        return f"127.0.0.1:{self.ports['grpc']}"

    @property
    def log_dir(self) -> Path:
        return Path(self.run_dir) / "logs"

    def keys(self) -> dict | None:
        """TorchServe's key_file.json (token auth on), else None."""
        return read_keys(self.run_dir) if self.token_auth else None

    def save(self) -> None:
        (Path(self.run_dir) / "state.json").write_text(json.dumps(asdict(self), indent=1))

    @classmethod
    def load(cls, run_dir: str | os.PathLike) -> "ServerInfo | None":
        path = Path(run_dir) / "state.json"
        return cls(**json.loads(path.read_text())) if path.exists() else None


def read_keys(run_dir: str | os.PathLike) -> dict | None:
    """{"management": key, "inference": key, "API": key} from the run directory's key_file.json."""
    path = Path(run_dir) / "key_file.json"
    if not path.exists():
        return None
    raw = json.loads(path.read_text())
    return {name: raw.get(name, {}).get("key") for name in ("management", "inference", "API")}


def free_ports() -> dict:
    """A free loopback port for each of TorchServe's endpoints."""
    return free_loopback_ports(list(DEFAULT_PORTS))


def alive(pgid: int) -> bool:
    """The server's process group still has a member (a launcher this process started is reaped first)."""
    return group_alive(pgid)


def _process_options(run: Path) -> dict:
    """How the server's process group is stopped and quoted: SIGTERM to the whole group (Java shuts its
    workers down), errors quote the reason found in the logs."""
    return {"name": "TorchServe", "stop_signal": signal.SIGTERM, "signal_group": True,
            "tail": lambda: log_reason(run / "logs")}


def _supervisor(pgid: int, run: Path) -> ManagedProcess:
    """The group of the launcher ``pgid`` (the object that started it, when this process did)."""
    return ManagedProcess.for_group(pgid, **_process_options(run))


def log_reason(log_dir: str | os.PathLike, lines: int = 25) -> str:
    """The last error-looking lines of the server's logs (what made start fail)."""
    found = []
    for name in ("model_log.log", "ts_log.log", "console.log"):
        path = Path(log_dir) / name
        if not path.exists():
            continue
        text = path.read_text(errors="replace").splitlines()
        hits = [f"{name}: {t.strip()}" for t in text
                if any(w in t for w in ("ERROR", "Error", "Exception", "Traceback", "error:", "not found"))]
        found += hits[-lines:]
    return "\n".join(found[-lines:]) or f"(no error lines in {log_dir})"


WORKER_FAILURES = ("Backend worker process died", "Load model failed", "Failed to load model")


def worker_failure(log_dir: str | os.PathLike) -> str | None:
    """A worker that died while loading (TorchServe would retry it forever): the log line that says so."""
    for name in ("ts_log.log", "model_log.log"):
        line = first_line_with(Path(log_dir) / name, WORKER_FAILURES)
        if line:
            return line[-300:]
    return None


def _wait_until_logs_settle(log_dir: str | os.PathLike, quiet: float = 0.5, at_most: float = 5.0) -> None:
    """Return once no log file of ``log_dir`` has grown for ``quiet`` seconds (or after ``at_most``)."""
    def sizes():
        return [(p.name, p.stat().st_size) for p in sorted(Path(log_dir).glob("*.log"))]
    deadline, last, since = time.monotonic() + at_most, sizes(), time.monotonic()
    while time.monotonic() < deadline and time.monotonic() - since < quiet:
        time.sleep(0.1)
        now = sizes()
        if now != last:
            last, since = now, time.monotonic()


def _get_json(url: str, token: str | None = None, timeout: float = 5.0):
    req = urllib.request.Request(url)
    if token:
        req.add_header("Authorization", f"Bearer {token}")
    with urllib.request.urlopen(req, timeout=timeout) as r:
        return json.loads(r.read().decode("utf-8"))


def worker_status(info: ServerInfo, model: str) -> list[str]:
    keys = info.keys() or {}
    described = _get_json(f"{info.management_url}/models/{model}", keys.get("management"))
    return [w.get("status", "?") for entry in described for w in entry.get("workers", [])]


def _models_in_store(store: Path, models: dict[str, str] | None) -> dict[str, str]:
    if models:
        for name, mar in models.items():
            if not (store / mar).exists() and not mar.startswith(("http://", "https://")):
                raise TorchServeError(f"{mar} not found in the model store {store}")
        return dict(models)
    mars = sorted(store.glob("*.mar"))
    if not mars:
        raise TorchServeError(f"no .mar archives in {store} (build one with `squeezetime archive`)")
    return {archive_model_name(m): m.name for m in mars}



def _forget(run: Path) -> None:
    """Remove the state a server of ``run`` leaves: state.json, keys, TorchServe's pid file, worker sockets.
    Only for a server whose process group is gone."""
    for left in (run / "state.json", run / "key_file.json", run / "tmp" / PID_FILE,
                 *(run / "tmp").glob(".ts.sock.*")):
        try:
            left.unlink(missing_ok=True)
        except IsADirectoryError:
            pass


def start(model_store: str | os.PathLike, *, models: dict[str, str] | None = None,
          run_dir: str | os.PathLike | None = None, ports: dict | None = None,
          max_request_size: int = DEFAULT_MAX_REQUEST_SIZE, job_queue_size: int = DEFAULT_JOB_QUEUE_SIZE,
          token_auth: bool = False, enable_model_api: bool = False, timeout: float = 180.0,
          extra_config: dict | None = None, java_home: str | None = None) -> ServerInfo:
    """Start TorchServe in the background and wait until every worker is READY (bounded by ``timeout``).

    ``max_request_size``: bytes; larger requests get 413. ``job_queue_size``: requests that may wait per
    model; more get 503 at once."""
    if int(max_request_size) < 1 or int(job_queue_size) < 1:
        raise TorchServeError("max_request_size and job_queue_size must be >= 1")
    store = Path(model_store).resolve()
    if not store.is_dir():
        raise TorchServeError(f"model store {store} is not a directory")
    serve = _models_in_store(store, models)
    run = Path(run_dir or default_run_dir()).resolve()
    _refuse_a_running_server(run)
    ports = _free_or_refuse({**DEFAULT_PORTS, **(ports or {})})
    _fresh_run_dir(run)
    limits = {"max_request_size": int(max_request_size), "job_queue_size": int(job_queue_size),
              "enable_model_api": bool(enable_model_api)}
    config = run / "config.properties"
    config.write_text(render_config(server_config(ports, store, serve, token_auth=token_auth, extra=extra_config,
                                                  **limits)))
    proc = _launch(run, _command(config, store, serve, token_auth, enable_model_api), java_home)
    info = ServerInfo(str(run), proc.pid, ports, list(serve), str(store), token_auth, limits)
    info.save()
    try:
        wait_ready(info, timeout, proc)
    except BaseException:
        stop(run, timeout=30)
        raise
    return info


def _refuse_a_running_server(run: Path) -> None:
    """One server per run directory; the state of one whose process group died without ``stop`` is forgotten."""
    previous = ServerInfo.load(run)
    if previous is not None and alive(previous.pid):
        raise TorchServeError(f"a TorchServe from {run} is already running (pid {previous.pid}); "
                              f"`squeezetime torchserve stop --run-dir {run}` first")
    if previous is not None:  # its process group died without `stop` (SIGKILL, OOM): stale state
        _forget(run)


def _free_or_refuse(ports: dict) -> dict:
    busy = [f"{name} {port}" for name, port in ports.items() if port_in_use(port)]
    if busy:
        raise TorchServeError(f"port(s) already in use on 127.0.0.1: {', '.join(busy)}")
    return ports


def _fresh_run_dir(run: Path) -> None:
    """tmp/ and empty logs/ (the previous run's kept once as logs.prev), no keys or state of an earlier server."""
    if (run / "logs").exists():
        shutil.rmtree(run / "logs.prev", ignore_errors=True)
        (run / "logs").rename(run / "logs.prev")
    for sub in ("tmp", "logs"):
        (run / sub).mkdir(parents=True, exist_ok=True)
    for stale in ("key_file.json", "state.json"):
        (run / stale).unlink(missing_ok=True)


def _command(config: Path, store: Path, serve: dict[str, str], token_auth: bool,
             enable_model_api: bool) -> list[str]:
    cmd = [sys.executable, "-c", LAUNCHER, "--start", "--foreground", "--ncs", "--ts-config", str(config),
           "--model-store", str(store), "--log-config", log_config_path(),
           "--models", *(f"{n}={m}" for n, m in serve.items())]
    if not token_auth:
        cmd.append("--disable-token-auth")
    if enable_model_api:
        cmd.append("--enable-model-api")
    return cmd


def _launch(run: Path, cmd: list[str], java_home: str | None) -> ManagedProcess:
    """Start the launcher detached (it outlives this process), its temp files and logs in the run directory."""
    env = dict(os.environ)
    env.update(TMPDIR=str(run / "tmp"), TEMP=str(run / "tmp"), LOG_LOCATION=str(run / "logs"),
               METRICS_LOCATION=str(run / "logs"))
    env["PATH"] = os.path.dirname(sys.executable) + os.pathsep + env.get("PATH", "")
    if java_home:
        env["JAVA_HOME"] = java_home
    proc = ManagedProcess(cmd, cwd=run, env=env, log_path=run / "logs" / "console.log", append_log=True,
                          detached=True, **_process_options(run))
    try:
        return proc.start()
    except ProcessError as e:
        raise TorchServeError(str(e)) from e


def wait_ready(info: ServerInfo, timeout: float, proc: "ManagedProcess | subprocess.Popen | None" = None) -> None:
    """Return once every worker of every model is READY. Raises TorchServeError (with the logs' reason) when
    the server exits (``proc``, else its process group), a worker fails to load its model, or after
    ``timeout`` s; the server is left to the caller to stop."""
    pending = list(info.models)

    def ready():
        while pending:
            try:
                statuses = worker_status(info, pending[0])
            except (urllib.error.URLError, OSError, ValueError) as e:
                return f"{pending[0]}: {getattr(e, 'reason', e)}"
            if not (statuses and all(s == "READY" for s in statuses)):
                return f"{pending[0]}: workers {statuses or 'none yet'}"
            pending.pop(0)
        return True

    def failed():
        if isinstance(proc, subprocess.Popen) and proc.poll() is not None:
            return f"the launcher exited with status {proc.returncode}"
        failure = worker_failure(info.log_dir)
        if failure:
            # the frontend logs the worker's death before it has copied the rest of the worker's traceback (its
            # last line is the reason) into model_log.log: let the logs settle before they are quoted
            _wait_until_logs_settle(info.log_dir)
            return f"a worker failed to load its model ({failure})"
        return None

    supervisor = proc if isinstance(proc, ManagedProcess) else _supervisor(info.pid, Path(info.run_dir))
    try:
        supervisor.wait_ready(ready, timeout, failure=failed, interval=0.5, stop_on_error=False)
    except ProcessError as e:
        raise TorchServeError(str(e)) from e


def stop(run_dir: str | os.PathLike | None = None, timeout: float = 60.0) -> bool:
    """Stop the run directory's TorchServe and wait until all its processes are gone. False: none ran."""
    run = Path(run_dir or default_run_dir()).resolve()
    info = ServerInfo.load(run)
    if info is None or not alive(info.pid):
        if info is not None:  # the group died without `stop`: forget its stale state
            _forget(run)
        return False
    proc = _supervisor(info.pid, run)
    try:
        proc.stop(max(1.0, timeout * 0.75), kill_timeout=max(1.0, timeout * 0.25))
    except ProcessError as e:
        raise TorchServeError(f"TorchServe (process group {info.pid}) still running after {timeout:.0f} s: "
                              f"{e}") from e
    _forget(run)
    return True


def status(run_dir: str | os.PathLike | None = None) -> dict:
    """``{"running": False}``, or the running server's pid, ports and each model's worker states (or why they
    could not be asked)."""
    info = ServerInfo.load(run_dir or default_run_dir())
    if info is None or not alive(info.pid):
        return {"running": False}
    models = {}
    for model in info.models:
        try:
            models[model] = worker_status(info, model)
        except OSError as e:
            models[model] = f"unreachable: {e}"
    return {"running": True, "pid": info.pid, "ports": info.ports, "models": models}


def run_foreground(info: ServerInfo) -> int:
    """Block until the server exits (Ctrl-C stops it)."""
    try:
        while alive(info.pid):
            time.sleep(1.0)
    except KeyboardInterrupt:
        stop(info.run_dir)
    return 0
