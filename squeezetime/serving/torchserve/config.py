"""TorchServe's configuration for one server: ``config.properties`` rendered from the template beside this
module (``render_config``, ``server_config``), and the logging and metrics declarations shipped with it.
"""
from __future__ import annotations

from importlib import resources
from pathlib import Path

DEFAULT_PORTS = {"inference": 8080, "management": 8081, "metrics": 8082, "grpc": 7070, "grpc_management": 7071}
DEFAULT_MAX_REQUEST_SIZE = 64 * 1024 * 1024
DEFAULT_JOB_QUEUE_SIZE = 100  # requests waiting per model; beyond it TorchServe answers 503 at once


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


def server_config(ports: dict, store: Path, serve: dict[str, str], *, max_request_size: int, job_queue_size: int,
                  token_auth: bool, enable_model_api: bool, extra: dict | None = None) -> dict:
    """config.properties' values for a loopback server on ``ports`` serving ``serve`` ({name: file.mar}) from
    ``store``; ``extra`` (e.g. ``gpu_config``) last."""
    return {
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
        **(extra or {}),
    }


def gpu_config(number_of_gpu: int | None) -> dict:
    """config.properties' number_of_gpu when given (TorchServe's default: every GPU it sees)."""
    if number_of_gpu is None:
        return {}
    if number_of_gpu < 0:
        raise ValueError(f"--number-of-gpu must be >= 0, got {number_of_gpu}")
    return {"number_of_gpu": number_of_gpu}


__all__ = ["DEFAULT_JOB_QUEUE_SIZE", "DEFAULT_MAX_REQUEST_SIZE", "DEFAULT_PORTS", "gpu_config", "log_config_path",
           "metrics_config_path", "render_config", "server_config", "template_text"]
