"""TorchServe handler: a thin adapter between TorchServe's batches and ``squeezetime.Classifier``.

The archive's entry file (``squeezetime_handler.py``, the same text as ``torchserve/handler.py`` in the
repository) subclasses :class:`SqueezeTimeHandler`; the worker imports this module from the
``squeezetime`` installed in TorchServe's Python environment (see docs/torchserve.md).

BaseHandler's life cycle:
- ``initialize``: ``squeezetime.load`` of the archive's checkpoint on the context's device (``gpu_id``; setting
  ``device``: auto, cpu or gpu), with the class names of the archive's ``index_to_name.json`` and the settings
  of ``model-config.yaml``;
- ``preprocess``: each request is validated on its own (``inputs.parse_request``); a bad one gets HTTP 400
  with an ASCII message, the others go on;
- ``inference``: the clips of all good requests in one ``Classifier.scores`` call (batched);
- ``postprocess``: ``Classifier.summarize_many``: one JSON list ``[{"label", "probability"}, ...]`` each.

``initialize`` warms the classifier up before the worker reports READY (setting ``warmup``, default on): on a GPU
the CUDA graph of every batch bucket up to ``max_clips_per_forward``, one forward at batch 1 and at
``max_clips_per_forward`` with zeros, and a tiny generated video decoded in every decode thread. The requests
of a batch are read and decoded in ``decode_threads`` threads (PyAV releases the GIL).
Metrics (``squeezetime.serving.metrics``: per-stage histograms, requests, clips, rejections by reason) go through
``context.metrics``; TorchServe exports them at its metrics address in ``metrics_mode=prometheus`` with the
``metrics.yaml`` beside this file as ``metrics_config``.
"""
from __future__ import annotations

import json
import logging
import os
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import numpy as np
import torch
from ts.torch_handler.base_handler import BaseHandler

import squeezetime
from squeezetime.errors import Refusal, SqueezeTimeError, refusal_of

from .. import metrics as m
from ..devices import require_cuda, warm_up_graphs
from ..requests import RequestError, RequestLimits, ascii_message, decode_budget, setting_flag
from ..warmup import in_every_thread
from .archive import LEGACY_OPTIMIZE
from .inputs import Parsed, parse_request

logger = logging.getLogger(__name__)

DEFAULTS = {"default_views": None, "default_topk": 5, "max_clips_per_request": 30, "max_clips_per_forward": 16,
            "backend": "auto", "dtype": None, "device": "auto", "threads": 0, "squeezetime_version": None,
            "decode_threads": 2, "warmup": True}  # dtype None: float32 on the CPU, float16 on a GPU
INDEX_TO_NAME = "index_to_name.json"
BATCH_LOG = "SQUEEZETIME_BATCH"  # grep-able line per batch in model_log.log


@dataclass
class Rejected:
    code: int
    message: str
    kind: str


@dataclass
class Batch:
    """One TorchServe batch on its way through preprocess -> inference -> postprocess."""
    items: list  # Parsed or Rejected, one per request
    start: float = field(default_factory=time.perf_counter)
    probs: torch.Tensor | None = None

    @property
    def good(self) -> list[Parsed]:
        return [p for p in self.items if isinstance(p, Parsed)]


class TorchServeMetrics(m.Recorder):
    """``squeezetime.serving.metrics`` through TorchServe's ``context.metrics`` (declared in ``metrics.yaml`` for
    the Prometheus endpoint; in ``metrics_mode=log`` they go to the metrics log). Never fails a batch: an error
    while recording is caught (and logged, once)."""

    def __init__(self, context_of):
        self.context_of = context_of  # () -> the handler's current context (BaseHandler.handle sets it per batch)
        self._warned = False

    def record(self, what: str, call) -> None:
        metrics = getattr(self.context_of(), "metrics", None)
        if metrics is None:
            return
        try:
            call(metrics)
        except Exception as e:  # noqa: BLE001 -- metrics never fail a batch
            if not self._warned:
                self._warned = True
                logger.warning("metric %s not recorded: %s: %s", what, type(e).__name__, e)

    def stage(self, stage: str, seconds: float) -> None:
        from ts.metrics.dimension import Dimension
        from ts.metrics.metric_type_enum import MetricTypes

        m.check_stage(stage)
        self.record(m.STAGE_SECONDS, lambda c: c.add_time(m.STAGE_SECONDS, max(0.0, float(seconds)), None, "s",
                                                        [Dimension("stage", stage)], MetricTypes.HISTOGRAM))

    def request(self, count: int = 1) -> None:
        self.record(m.REQUESTS, lambda c: c.add_counter(m.REQUESTS, int(count), None, []))

    def rejected(self, reason: Refusal) -> None:
        from ts.metrics.dimension import Dimension

        label = m.check_reason(reason)
        self.record(m.REJECTIONS, lambda c: c.add_counter(m.REJECTIONS, 1, None, [Dimension("reason", label)]))

    def clips(self, count: int) -> None:
        self.record(m.CLIPS, lambda c: c.add_counter(m.CLIPS, int(count), None, []))


def error_body(code: int, message: str, kind: str) -> str:
    return json.dumps({"code": code, "type": kind, "message": message})


def read_class_names(model_dir: str) -> list[str] | None:
    """The archive's ``index_to_name.json`` ({"0": name, ...}) as a list, or None when it has none."""
    path = os.path.join(model_dir, INDEX_TO_NAME)
    if not os.path.exists(path):
        return None
    with open(path, encoding="utf-8") as f:
        mapping = json.load(f)
    return [mapping[str(i)] for i in range(len(mapping))]


def context_device(properties: dict, wanted: str = "auto") -> torch.device:
    """This worker's device. ``auto``: ``cuda:<gpu_id>`` when TorchServe assigned a GPU and torch has one, else
    the CPU; ``cpu``: the CPU; ``gpu`` (an archive built with ``--device gpu``): ``cuda:<gpu_id>``, refused with
    the reason when TorchServe assigned no GPU or torch cannot use it."""
    gpu_id = properties.get("gpu_id")
    if wanted == "cpu":
        return torch.device("cpu")
    if wanted == "gpu":
        if gpu_id is None:
            raise RuntimeError("the archive asks for a GPU (deviceType: gpu) but TorchServe assigned this worker "
                               "none (no GPU visible to TorchServe, or number_of_gpu=0)")
        require_cuda(f"cuda:{int(gpu_id)}", f"TorchServe (gpu_id {gpu_id})")
    elif gpu_id is None or not torch.cuda.is_available():
        return torch.device("cpu")
    return torch.device(f"cuda:{int(gpu_id)}")


class SqueezeTimeHandler(BaseHandler):
    """Accepts videos, .npy clips, JSON options; batches all clips of a TorchServe batch into one model run."""

    def initialize(self, context):
        properties = context.system_properties
        model_dir = properties.get("model_dir")
        settings = dict(DEFAULTS)
        settings.update((getattr(context, "model_yaml_config", None) or {}).get("handler", {}) or {})
        if "optimize" in settings:
            settings["backend"] = LEGACY_OPTIMIZE.get(str(settings.pop("optimize")), "auto")
        self.settings = settings
        wanted = settings.get("squeezetime_version")
        if wanted and wanted != squeezetime.__version__:
            logger.warning("archive was built with squeezetime %s, the worker has %s", wanted,
                           squeezetime.__version__)
        self.manifest = context.manifest
        serialized = self.manifest["model"].get("serializedFile")
        if not serialized:
            raise RuntimeError("the archive has no serialized model file (build it with `squeezetime archive`)")
        self.device = context_device(properties, str(settings["device"]))
        self.classifier = squeezetime.load(
            os.path.join(model_dir, serialized), backend=str(settings["backend"]), dtype=settings["dtype"] or None,
            device=self.device, threads=int(settings["threads"] or 0) or None,
            batch_size=max(1, int(settings["max_clips_per_forward"])), class_names=read_class_names(model_dir),
            budget=decode_budget(settings))
        self.limits = RequestLimits(max_video_bytes=int(settings.get("max_video_bytes") or
                                                        RequestLimits().max_video_bytes),
                                    max_clips=int(settings["max_clips_per_request"]))
        self.recorder = TorchServeMetrics(lambda: self.context)
        self.decode_threads = max(1, int(settings["decode_threads"] or 1))
        self.pool = ThreadPoolExecutor(self.decode_threads, thread_name_prefix="squeezetime-decode") \
            if self.decode_threads > 1 else None
        warm = self.warm_up() if setting_flag(settings["warmup"], True) else "off"
        self.initialized = True
        logger.info("squeezetime %s: %s, %r, settings=%s, warm-up %s", squeezetime.__version__, serialized,
                    self.classifier, settings, warm)

    def warm_up(self) -> str:
        """Before the worker reports READY: on a GPU the CUDA graphs of every batch bucket up to
        ``max_clips_per_forward`` (the largest model batch); one forward at batch 1 and at ``max_clips_per_forward``
        (zeros); a tiny generated video decoded in every decode thread. So the first request is not the slow one."""
        from squeezetime.synthetic.generator import warmup_video

        started = time.perf_counter()
        graphs = warm_up_graphs(self.classifier, self.classifier.batch_size)
        d = self.classifier.data_config
        for n in sorted({1, self.classifier.batch_size}):
            self.classifier.scores(np.zeros((n, d.num_frames, d.crop_size, d.crop_size, 3), np.uint8))
        video = warmup_video(d.num_frames, d.view(self.settings["default_views"]).short_side)

        def decode():
            return self.classifier.clips(video, self.settings["default_views"])

        if self.pool is None:
            decode()
        else:
            in_every_thread(self.pool.submit, self.decode_threads, decode)
        took = f"{time.perf_counter() - started:.2f} s"
        return f"{took}, CUDA graphs for batches {list(graphs)}" if graphs else took

    # -- BaseHandler life cycle ---------------------------------------------------------------------------
    def preprocess(self, data) -> Batch:
        batch = Batch([])
        self.recorder.request(len(data))
        submitted = time.perf_counter()
        if self.pool is not None and len(data) > 1:  # the videos of a batch are decoded side by side
            batch.items = list(self.pool.map(lambda ir: self._read(ir[0], ir[1], submitted), enumerate(data)))
        else:
            batch.items = [self._read(i, request, submitted) for i, request in enumerate(data)]
        return batch

    def _read(self, i: int, request, submitted: float):
        """One request -> Parsed or Rejected; records its queue (waiting for a decode thread), decode and
        preprocess (the rest of reading it) seconds."""
        started = time.perf_counter()
        self.recorder.stage("queue", started - submitted)
        decoding = m.Stopwatch()  # the decode inside reading the request, timed apart
        try:
            return parse_request(request, self.classifier, headers=self._headers(i), limits=self.limits,
                                 default_views=self.settings["default_views"],
                                 default_topk=int(self.settings["default_topk"]), stopwatch=decoding)
        except Exception as e:  # noqa: BLE001 -- an unforeseen failure of one request stays its own
            if not isinstance(e, SqueezeTimeError):
                logger.exception("request %d: unexpected error while reading it", i)
                e = RequestError(f"unreadable request ({type(e).__name__}: {e})")
            self.recorder.rejected(refusal_of(e))
            return Rejected(400, ascii_message(str(e)), type(e).__name__)
        finally:
            if decoding.seconds:
                self.recorder.stage("decode", decoding.seconds)
            self.recorder.stage("preprocess", time.perf_counter() - started - decoding.seconds)

    def inference(self, batch: Batch, *args, **kwargs) -> Batch:
        good = batch.good
        if good:
            with self.recorder.timed("inference"):
                batch.probs = self.classifier.scores(torch.cat([torch.from_numpy(p.clips) for p in good]))
        return batch

    def postprocess(self, batch: Batch) -> list[str]:
        started = time.perf_counter()
        good = batch.good
        tops = iter(self.classifier.summarize_many(batch.probs, [len(p.clips) for p in good],
                                                   [p.topk for p in good]) if good else [])
        clip_count = sum(len(p.clips) for p in good)
        results = []
        for i, item in enumerate(batch.items):
            if isinstance(item, Rejected):
                logger.info("request %d rejected (%d): %s", i, item.code, item.message)
                self.context.set_response_status(item.code, item.message, idx=i)
                results.append(error_body(item.code, item.message, item.kind))
            else:
                results.append(json.dumps([{"label": label, "probability": p} for label, p in next(tops)]))
            self.context.set_response_content_type(i, "application/json")
            self.context.set_response_header(i, "X-SqueezeTime-Batch-Requests", str(len(batch.items)))
            self.context.set_response_header(i, "X-SqueezeTime-Batch-Clips", str(clip_count))
            self.context.set_response_header(i, "X-SqueezeTime-Backend", self.classifier.backend.name)
        elapsed_ms = (time.perf_counter() - batch.start) * 1000
        logger.info("%s requests=%d good=%d clips=%d ms=%.1f backend=%s", BATCH_LOG, len(batch.items), len(good),
                    clip_count, elapsed_ms, self.classifier.backend.name)
        self._metrics(len(batch.items), clip_count, elapsed_ms)
        self.recorder.stage("postprocess", time.perf_counter() - started)
        self.recorder.clips(clip_count)
        for _ in batch.items:
            self.recorder.stage("total", elapsed_ms / 1000)
        return results

    # -- helpers ------------------------------------------------------------------------------------------
    def _headers(self, idx: int) -> dict:
        try:
            return dict(self.context.get_all_request_header(idx) or {})
        except Exception:  # noqa: BLE001 -- no headers (gRPC, or an older TorchServe)
            return {}

    def _metrics(self, requests: int, clips: int, elapsed_ms: float) -> None:
        """The per-batch gauges of the first version (SqueezeTimeBatch*), through the same never-failing recorder."""
        from ts.metrics.metric_type_enum import MetricTypes

        def add(metrics) -> None:
            metrics.add_metric("SqueezeTimeBatchRequests", requests, "count", metric_type=MetricTypes.GAUGE)
            metrics.add_metric("SqueezeTimeBatchClips", clips, "count", metric_type=MetricTypes.GAUGE)
            metrics.add_time("SqueezeTimeHandlerTime", elapsed_ms, None, "ms")

        self.recorder.record("SqueezeTimeBatch", add)
