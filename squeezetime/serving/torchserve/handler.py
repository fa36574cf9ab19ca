"""TorchServe handler: a thin adapter between TorchServe's batches and ``squeezetime.Classifier``.

The archive's entry file (``squeezetime_handler.py``, the same text as ``torchserve/handler.py`` in the
repository) subclasses :class:`SqueezeTimeHandler`; the worker imports this module from the
``squeezetime`` installed in TorchServe's Python environment (see docs/torchserve.md).

BaseHandler's life cycle:
- ``initialize``: ``squeezetime.load`` of the archive's checkpoint on the context's device (``gpu_id``), with
  the class names of the archive's ``index_to_name.json`` and the settings of ``model-config.yaml``;
- ``preprocess``: each request is validated on its own (``inputs.parse_request``); a bad one gets HTTP 400
  with an ASCII message, the others go on;
- ``inference``: the clips of all good requests in one ``Classifier.scores`` call (batched);
- ``postprocess``: ``Classifier.summarize_many``: one JSON list ``[{"label", "probability"}, ...]`` each.
"""
from __future__ import annotations

import json
import logging
import os
import time
from dataclasses import dataclass, field

import torch
from ts.torch_handler.base_handler import BaseHandler

import squeezetime
from squeezetime.errors import SqueezeTimeError

from ..requests import RequestLimits, ascii_message, decode_budget
from .archive import LEGACY_OPTIMIZE
from .inputs import Parsed, parse_request

logger = logging.getLogger(__name__)

DEFAULTS = {"default_views": None, "default_topk": 5, "max_clips_per_request": 30, "max_clips_per_forward": 16,
            "backend": "auto", "dtype": "float32", "threads": 0, "squeezetime_version": None}
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


def context_device(properties: dict) -> torch.device:
    """TorchServe's device for this worker: ``cuda:<gpu_id>`` when it assigned a GPU and one exists, else CPU."""
    gpu_id = properties.get("gpu_id")
    if gpu_id is not None and torch.cuda.is_available():
        return torch.device(f"cuda:{int(gpu_id)}")
    return torch.device("cpu")


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
        self.device = context_device(properties)
        self.classifier = squeezetime.load(
            os.path.join(model_dir, serialized), backend=str(settings["backend"]), dtype=str(settings["dtype"]),
            device=self.device, threads=int(settings["threads"] or 0) or None,
            batch_size=max(1, int(settings["max_clips_per_forward"])), class_names=read_class_names(model_dir),
            budget=decode_budget(settings))
        self.limits = RequestLimits(max_video_bytes=int(settings.get("max_video_bytes") or
                                                        RequestLimits().max_video_bytes),
                                    max_clips=int(settings["max_clips_per_request"]))
        self.initialized = True
        logger.info("squeezetime %s: %s, %r, settings=%s", squeezetime.__version__, serialized, self.classifier,
                    settings)

    # -- BaseHandler life cycle ---------------------------------------------------------------------------
    def preprocess(self, data) -> Batch:
        items = []
        for i, request in enumerate(data):
            try:
                items.append(parse_request(request, self.classifier, headers=self._headers(i), limits=self.limits,
                                           default_views=self.settings["default_views"],
                                           default_topk=int(self.settings["default_topk"])))
            except SqueezeTimeError as e:
                items.append(Rejected(400, ascii_message(str(e)), type(e).__name__))
            except Exception as e:  # noqa: BLE001 -- an unforeseen failure of one request stays its own
                logger.exception("request %d: unexpected error while reading it", i)
                items.append(Rejected(400, ascii_message(f"unreadable request ({type(e).__name__}: {e})"),
                                      "RequestError"))
        return Batch(items)

    def inference(self, batch: Batch, *args, **kwargs) -> Batch:
        good = batch.good
        if good:
            batch.probs = self.classifier.scores(torch.cat([torch.from_numpy(p.clips) for p in good]))
        return batch

    def postprocess(self, batch: Batch) -> list[str]:
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
        return results

    # -- helpers ------------------------------------------------------------------------------------------
    def _headers(self, idx: int) -> dict:
        try:
            return dict(self.context.get_all_request_header(idx) or {})
        except Exception:  # noqa: BLE001 -- no headers (gRPC, or an older TorchServe)
            return {}

    def _metrics(self, requests: int, clips: int, elapsed_ms: float) -> None:
        metrics = getattr(self.context, "metrics", None)
        if metrics is None:
            return
        try:
            from ts.metrics.metric_type_enum import MetricTypes

            metrics.add_metric("SqueezeTimeBatchRequests", requests, "count", metric_type=MetricTypes.GAUGE)
            metrics.add_metric("SqueezeTimeBatchClips", clips, "count", metric_type=MetricTypes.GAUGE)
            metrics.add_time("SqueezeTimeHandlerTime", elapsed_ms, None, "ms")
        except Exception as e:  # noqa: BLE001 -- metrics never fail a batch
            logger.debug("metrics not recorded: %s", e)
