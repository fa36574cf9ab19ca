"""Start and stop a real TorchServe for ``.mar`` archives, with its own run directory and bounded waits.

A run directory (default ``~/.cache/squeezetime/torchserve``, or ``--run-dir``) holds everything of one
server: ``config.properties`` (rendered from the template beside this file), ``tmp/`` (TMPDIR/TEMP: the
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
from importlib import resources
from pathlib import Path

from ...errors import SqueezeTimeError
from .archive import archive_model_name
from ..ports import free_ports as free_loopback_ports, port_in_use
from ..supervisor import ManagedProcess, ProcessError, first_line_with, group_alive

DEFAULT_PORTS = {"inference": 8080, "management": 8081, "metrics": 8082, "grpc": 7070, "grpc_management": 7071}
DEFAULT_MAX_REQUEST_SIZE = 64 * 1024 * 1024
DEFAULT_JOB_QUEUE_SIZE = 100  # requests waiting per model; beyond it TorchServe answers 503 at once
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


def metrics_config_path() -> str:
    """The metrics declarations (TorchServe's defaults and squeezetime's stages) shipped beside this module."""
    return str(resources.files(__package__).joinpath("metrics.yaml"))


def log_config_path() -> str:
    """TorchServe's logging for serving (log4j2.xml beside this module): INFO and up, one access line per request,
    no per-request DEBUG chatter and no second copy on stdout (TorchServe's default logs ~30 lines a request)."""
    return str(resources.files(__package__).joinpath("log4j2.xml"))


def template_text() -> str:
    return resources.files(__package__).joinpath("config.properties").read_text(encoding="utf-8")


def render_config(values: dict, template: str | None = None) -> str:
    """The template with ``key=value`` lines replaced (comments kept); keys it lacks are appended."""
    values = {k: str(v) for k, v in values.items()}
    out, seen = [], set()
    for line in (template or template_text()).splitlines():
        key = line.split("=", 1)[0].strip() if "=" in line and not line.lstrip().startswith("#") else None
        if key in values:
            out.append(f"{key}={values[key]}")
            seen.add(key)
        else:
            out.append(line)
    out += [f"{k}={v}" for k, v in values.items() if k not in seen]
    return "\n".join(out) + "\n"


def free_ports() -> dict:
    """A free loopback port for each of TorchServe's endpoints."""
    return free_loopback_ports(list(DEFAULT_PORTS))


def _alive(pgid: int) -> bool:
    """The server's process group still has a member (a launcher this process started is reaped first)."""
    return group_alive(pgid)


def _supervisor(pgid: int, run: Path) -> ManagedProcess:
    """The group of the launcher ``pgid`` (the object that started it, when this process did)."""
    return ManagedProcess.for_group(pgid, name="TorchServe", stop_signal=signal.SIGTERM, signal_group=True,
                                    tail=lambda: log_reason(run / "logs"))


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
    previous = ServerInfo.load(run)
    if previous is not None and _alive(previous.pid):
        raise TorchServeError(f"a TorchServe from {run} is already running (pid {previous.pid}); "
                              f"`squeezetime torchserve stop --run-dir {run}` first")
    if previous is not None:  # its process group died without `stop` (SIGKILL, OOM): stale state
        _forget(run)
    ports = {**DEFAULT_PORTS, **(ports or {})}
    busy = [f"{name} {port}" for name, port in ports.items() if port_in_use(port)]
    if busy:
        raise TorchServeError(f"port(s) already in use on 127.0.0.1: {', '.join(busy)}")
    if (run / "logs").exists():  # keep the previous run's logs once; start with empty ones
        shutil.rmtree(run / "logs.prev", ignore_errors=True)
        (run / "logs").rename(run / "logs.prev")
    for sub in ("tmp", "logs"):
        (run / sub).mkdir(parents=True, exist_ok=True)
    for stale in ("key_file.json", "state.json"):
        (run / stale).unlink(missing_ok=True)
    values = {
        "inference_address": f"http://127.0.0.1:{ports['inference']}",
        "management_address": f"http://127.0.0.1:{ports['management']}",
        "metrics_address": f"http://127.0.0.1:{ports['metrics']}",
        "grpc_inference_address": "127.0.0.1", "grpc_inference_port": ports["grpc"],
        "grpc_management_address": "127.0.0.1", "grpc_management_port": ports["grpc_management"],
        "max_request_size": int(max_request_size),
        "job_queue_size": int(job_queue_size),
        "disable_token_authorization": str(not token_auth).lower(),
        "enable_model_api": str(bool(enable_model_api)).lower(),
        "model_store": store,
        "load_models": ",".join(f"{n}={m}" for n, m in serve.items()),
        # TorchServe's own metrics plus squeezetime's (docs/metrics.md), served as Prometheus text
        "metrics_mode": "prometheus", "metrics_config": metrics_config_path(),
        **(extra_config or {}),
    }
    config = run / "config.properties"
    config.write_text(render_config(values))
    env = dict(os.environ)
    env.update(TMPDIR=str(run / "tmp"), TEMP=str(run / "tmp"), LOG_LOCATION=str(run / "logs"),
               METRICS_LOCATION=str(run / "logs"))
    env["PATH"] = os.path.dirname(sys.executable) + os.pathsep + env.get("PATH", "")
    if java_home:
        env["JAVA_HOME"] = java_home
    cmd = [sys.executable, "-c", LAUNCHER, "--start", "--foreground", "--ncs", "--ts-config", str(config),
           "--model-store", str(store), "--log-config", log_config_path(),
           "--models", *(f"{n}={m}" for n, m in serve.items())]
    if not token_auth:
        cmd.append("--disable-token-auth")
    if enable_model_api:
        cmd.append("--enable-model-api")
    proc = ManagedProcess(cmd, cwd=run, env=env, log_path=run / "logs" / "console.log", append_log=True,
                          name="TorchServe", stop_signal=signal.SIGTERM, signal_group=True, detached=True,
                          tail=lambda: log_reason(run / "logs"))
    try:
        proc.start()
    except ProcessError as e:
        raise TorchServeError(str(e)) from e
    info = ServerInfo(str(run), proc.pid, ports, list(serve), str(store), token_auth,
                      {"max_request_size": int(max_request_size), "job_queue_size": int(job_queue_size),
                       "enable_model_api": bool(enable_model_api)})
    info.save()
    try:
        wait_ready(info, timeout, proc)
    except BaseException:
        stop(run, timeout=30)
        raise
    return info


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
    if info is None or not _alive(info.pid):
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


def run_foreground(info: ServerInfo) -> int:
    """Block until the server exits (Ctrl-C stops it)."""
    try:
        while _alive(info.pid):
            time.sleep(1.0)
    except KeyboardInterrupt:
        stop(info.run_dir)
    return 0
