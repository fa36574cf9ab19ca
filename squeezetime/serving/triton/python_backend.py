"""The plumbing between our Triton models and Triton's python backend (``triton_python_backend_utils``): reading
a model's config and a request's optional fields, error responses, logging, and Prometheus metrics through the
backend's custom metrics.

``triton_python_backend_utils`` exists only inside tritonserver's python-backend stub, so it is imported on first
use (``pb_utils()``), and this module imports cleanly anywhere (unit tests, the CLI).
"""
from __future__ import annotations

import threading

from ...errors import Refusal
from .. import metrics as m
from ..devices import require_cuda, triton_device
from ..requests import RequestError, ascii_message

# The gRPC status of each refusal (``pb_utils.TritonError`` codes); the others are the client's: INVALID_ARG.
ERROR_CODES = {Refusal.CANCELLED: "CANCELLED", Refusal.OVERLOADED: "UNAVAILABLE", Refusal.INTERNAL: "INTERNAL"}


def pb_utils():
    """``triton_python_backend_utils``: importable only inside tritonserver's python backend stub."""
    import triton_python_backend_utils
    return triton_python_backend_utils


def parameters(model_config: dict) -> dict[str, str]:
    """The ``parameters`` of a model config as ``{key: string_value}``."""
    return {k: v.get("string_value", "") for k, v in model_config.get("parameters", {}).items()}


def input_dims(model_config: dict, name: str) -> list[int]:
    """The dims (without the batch dimension) of input ``name`` in the model's config."""
    for entry in model_config.get("input", []):
        if entry["name"] == name:
            return [int(d) for d in entry["dims"]]
    raise ValueError(f"the model config has no input {name}")


def instance_device(args: dict) -> str:
    """The device of this model instance: ``cuda:<model_instance_device_id>`` for a KIND_GPU instance (refused
    with the reason when torch cannot use that GPU), else ``cpu``."""
    device = triton_device(args.get("model_instance_kind"), args.get("model_instance_device_id"))
    if device != "cpu":
        require_cuda(device, f"Triton (KIND_GPU instance {args.get('model_instance_name', '')!r})")
    return device


def cpu_outputs() -> dict:
    """The BLS keyword that asks for the clip model's outputs in CPU memory, where ``as_numpy`` reads them (a
    KIND_GPU caller may otherwise be handed GPU memory); {} on python backends older than PreferredMemory."""
    pb = pb_utils()
    if not hasattr(pb, "PreferredMemory"):
        return {}
    return {"preferred_memory": pb.PreferredMemory(pb.TRITONSERVER_MEMORY_CPU, 0)}


def error_response(message: str, refusal: Refusal = Refusal.INVALID_REQUEST):
    """An error response with ``message`` (as ASCII) and the gRPC status of ``refusal``."""
    pb = pb_utils()
    code = ERROR_CODES.get(refusal, "INVALID_ARG")
    return pb.InferenceResponse(error=pb.TritonError(ascii_message(message), getattr(pb.TritonError, code)))


def log(level: str, message: str) -> None:
    """``pb_utils.Logger.log_<level>``; printed when the backend's logger is unavailable."""
    try:
        getattr(pb_utils().Logger, f"log_{level}")(message)
    except Exception:  # noqa: BLE001 - logging must never fail a request
        print(message, flush=True)


def single_element(request, name: str):
    """The one element of optional input ``name`` of a request, or None when it is absent."""
    tensor = pb_utils().get_input_tensor_by_name(request, name)
    if tensor is None:
        return None
    array = tensor.as_numpy()
    if array.size != 1:
        raise RequestError(f"{name} must hold exactly one element per request, got shape {list(array.shape)}")
    return array.reshape(-1)[0]


def bls_probs(model: str, clips, **options):
    """A BLS request for ``model``'s ``PROBS`` of ``clips`` (uint8 N, T, H, W, 3)."""
    pb = pb_utils()
    return pb.InferenceRequest(model_name=model, requested_output_names=["PROBS"], inputs=[pb.Tensor("CLIP", clips)],
                               **options)


def probs_of(model: str, response):
    """The ``PROBS`` array of a BLS response (an error response raises with the clip model's message)."""
    if response.has_error():
        raise RuntimeError(f"{model}: {response.error().message()}")
    return pb_utils().get_output_tensor_by_name(response, "PROBS").as_numpy()


class TritonMetrics(m.Recorder):
    """``squeezetime.serving.metrics`` through the python backend's custom metrics (``pb_utils.MetricFamily``), on
    Triton's metrics endpoint. Labels: ``model`` (and ``stage`` / ``reason``). Metrics never fail a request: an
    error while recording is caught (and logged, once).

    Thread safety: the stub's ``Metric.observe/increment`` are not (24.10: each call releases the GIL and then
    replaces the metric's shared-memory block, so two threads on one metric hand the server a freed block and
    tritonserver aborts with std::bad_alloc). Every call here holds one lock."""

    def __init__(self, model: str):
        family = pb_utils().MetricFamily
        # The families must outlive their metrics (and the server removes a family when its object is freed).
        self.families = {
            m.STAGE_SECONDS: family(m.STAGE_SECONDS, m.DESCRIPTIONS[m.STAGE_SECONDS], family.HISTOGRAM),
            m.REQUESTS: family(m.REQUESTS, m.DESCRIPTIONS[m.REQUESTS], family.COUNTER),
            m.REJECTIONS: family(m.REJECTIONS, m.DESCRIPTIONS[m.REJECTIONS], family.COUNTER),
            m.CLIPS: family(m.CLIPS, m.DESCRIPTIONS[m.CLIPS], family.COUNTER),
        }
        f = self.families
        self.stages = {stage: f[m.STAGE_SECONDS].Metric(labels={"model": model, "stage": stage},
                                                         buckets=list(m.BUCKETS)) for stage in m.STAGES}
        self.requests = f[m.REQUESTS].Metric(labels={"model": model})
        self.rejections = {reason.value: f[m.REJECTIONS].Metric(labels={"model": model, "reason": reason.value})
                           for reason in m.REASONS}
        self.clip_count = f[m.CLIPS].Metric(labels={"model": model})
        self.warned = False
        self.lock = threading.Lock()

    def record(self, fn, value) -> None:
        try:
            with self.lock:
                fn(value)
        except Exception as e:  # noqa: BLE001 - metrics never fail a request
            if not self.warned:
                self.warned = True
                log("warn", f"squeezetime: a metric could not be recorded: {type(e).__name__}: {e}")

    def stage(self, stage: str, seconds: float) -> None:
        self.record(self.stages[m.check_stage(stage)].observe, max(0.0, float(seconds)))

    def request(self, count: int = 1) -> None:
        self.record(self.requests.increment, float(count))

    def rejected(self, reason: Refusal) -> None:
        self.record(self.rejections[m.check_reason(reason)].increment, 1.0)

    def clips(self, count: int) -> None:
        self.record(self.clip_count.increment, float(count))


def metrics_recorder(model: str) -> m.Recorder:
    """``TritonMetrics`` for ``model``; a recorder of nothing when the server has no custom metrics."""
    try:
        return TritonMetrics(model)
    except Exception as e:  # noqa: BLE001 - a server without custom metrics (--allow-metrics=false) still serves
        log("warn", f"squeezetime: {model}: no custom metrics ({type(e).__name__}: {e})")
        return m.Recorder()


__all__ = ["ERROR_CODES", "TritonMetrics", "bls_probs", "cpu_outputs", "error_response", "input_dims",
           "instance_device", "log", "metrics_recorder", "parameters", "pb_utils", "probs_of", "single_element"]
