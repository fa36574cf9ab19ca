"""TorchServe handler: a thin layer over the package (decode -> clips -> model -> top-k JSON).

The archive's entry file (``squeezetime_handler.py``, the same text as ``torchserve/handler.py`` in the
repository) subclasses :class:`SqueezeTimeHandler`; the worker imports this module from the
``squeezetime`` installed in TorchServe's Python environment (see docs/torchserve.md, "How the package
reaches the worker").

Per batch: every request is validated on its own (a bad one gets HTTP 400 with a message, the others
go on), the clips of all good requests run through the model together, and each request gets its
own JSON list ``[{"label": ..., "probability": ...}, ...]`` (best first).
"""
from __future__ import annotations

import importlib
import json
import logging
import os
import time
import types

import torch
from ts.torch_handler.base_handler import BaseHandler

import squeezetime
from squeezetime.errors import SqueezeTimeError
from squeezetime.predict import clip_softmax, label_names, top_k

from .inputs import Parsed, parse_request

logger = logging.getLogger(__name__)

DEFAULTS = {"default_views": "1x1", "default_topk": 5, "max_clips_per_request": 30,
            "max_clips_per_forward": 16, "optimize": "auto", "threads": 0, "squeezetime_version": None}
BATCH_LOG = "SQUEEZETIME_BATCH"  # grep-able line per batch in model_log.log


def _headers(context, idx: int) -> dict:
    try:
        return dict(context.get_all_request_header(idx) or {})
    except Exception:  # noqa: BLE001 -- no headers (gRPC, or an older TorchServe)
        return {}


def error_body(code: int, message: str, kind: str) -> str:
    return json.dumps({"code": code, "type": kind, "message": message})


class SqueezeTimeHandler(BaseHandler):
    """Accepts videos, .npy clips, JSON options; batches all clips of a TorchServe batch into one model run."""

    def initialize(self, context):
        properties = context.system_properties
        model_dir = properties.get("model_dir")
        settings = dict(DEFAULTS)
        settings.update((getattr(context, "model_yaml_config", None) or {}).get("handler", {}) or {})
        self.settings = settings
        if int(settings.get("threads") or 0) > 0:
            torch.set_num_threads(int(settings["threads"]))
        wanted = settings.get("squeezetime_version")
        if wanted and wanted != squeezetime.__version__:
            logger.warning("archive was built with squeezetime %s, the worker has %s", wanted,
                           squeezetime.__version__)
        self.manifest = context.manifest
        serialized = self.manifest["model"].get("serializedFile")
        if not serialized:
            raise RuntimeError("the archive has no serialized model file (build it with `squeezetime archive`)")
        path = os.path.join(model_dir, serialized)
        model = squeezetime.load_checkpoint(path)
        if model.cls_head is None:
            raise RuntimeError(f"{serialized}: a backbone-only model cannot be served as a classifier")
        self.names = label_names(model)
        self.num_frames = model.num_frames
        self.model, self.path = self._maybe_optimize(model, str(settings.get("optimize", "auto")))
        self.device = torch.device("cpu")
        self.initialized = True
        logger.info("squeezetime %s: %s, %d classes, path=%s, settings=%s", squeezetime.__version__,
                    serialized, len(self.names), self.path, settings)

    @staticmethod
    def _maybe_optimize(model, mode: str):
        optimize = getattr(squeezetime, "optimize", None)
        if optimize is None and mode != "off":
            try:  # the optimised path, where this version of the package has it
                optimize = importlib.import_module("squeezetime.optimize")
            except ImportError:
                optimize = None
        if isinstance(optimize, types.ModuleType):
            optimize = getattr(optimize, "optimize", None)
        if mode == "off" or optimize is None:
            return model, "plain"
        try:
            return optimize(model), "optimized"
        except Exception as e:  # noqa: BLE001 -- the plain path always works
            if mode == "on":
                raise
            logger.warning("squeezetime.optimize failed (%s: %s); serving the plain model", type(e).__name__, e)
            return model, "plain"

    # -- one batch -----------------------------------------------------------------------------------
    def parse(self, request: dict, headers: dict | None = None) -> Parsed:
        s = self.settings
        return parse_request(request, headers=headers, num_frames=self.num_frames, crop=224, default_views=s["default_views"],
                             default_topk=int(s["default_topk"]), max_clips=int(s["max_clips_per_request"]))

    def probabilities(self, clips: torch.Tensor) -> torch.Tensor:
        """uint8 (N, T, H, W, 3) -> per-clip softmax (N, classes), in chunks of max_clips_per_forward."""
        return clip_softmax(self.model, clips, max(1, int(self.settings["max_clips_per_forward"])))

    def handle(self, data, context):
        start = time.perf_counter()
        results: list[str | None] = [None] * len(data)
        good: list[tuple[int, Parsed]] = []
        for i, request in enumerate(data):
            try:
                good.append((i, self.parse(request, _headers(context, i))))
            except SqueezeTimeError as e:
                self._reject(context, i, results, 400, str(e), type(e).__name__)
            except Exception as e:  # noqa: BLE001 -- an unforeseen failure of one request stays its own
                logger.exception("request %d: unexpected error while reading it", i)
                self._reject(context, i, results, 400, f"unreadable request ({type(e).__name__}: {e})",
                             "RequestError")
        clip_count = sum(p.clips.shape[0] for _, p in good)
        if good:
            clips = torch.cat([torch.from_numpy(p.clips) for _, p in good])
            probs = self.probabilities(clips)
            offset = 0
            for i, parsed in good:
                n = parsed.clips.shape[0]
                top = top_k(probs[offset:offset + n].mean(0), self.names, parsed.topk)
                offset += n
                results[i] = json.dumps([{"label": label, "probability": p} for label, p in top])
                context.set_response_content_type(i, "application/json")
        for i in range(len(data)):
            context.set_response_header(i, "X-SqueezeTime-Batch-Requests", str(len(data)))
            context.set_response_header(i, "X-SqueezeTime-Batch-Clips", str(clip_count))
            context.set_response_header(i, "X-SqueezeTime-Path", self.path)
        elapsed_ms = (time.perf_counter() - start) * 1000
        logger.info("%s requests=%d good=%d clips=%d ms=%.1f path=%s", BATCH_LOG, len(data), len(good),
                    clip_count, elapsed_ms, self.path)
        self._metrics(context, len(data), clip_count, elapsed_ms)
        return results

    @staticmethod
    def _reject(context, i: int, results: list, code: int, message: str, kind: str) -> None:
        logger.info("request %d rejected (%d): %s", i, code, message)
        context.set_response_status(code, message, idx=i)
        context.set_response_content_type(i, "application/json")
        results[i] = error_body(code, message, kind)

    @staticmethod
    def _metrics(context, requests: int, clips: int, elapsed_ms: float) -> None:
        metrics = getattr(context, "metrics", None)
        if metrics is None:
            return
        try:
            from ts.metrics.metric_type_enum import MetricTypes

            metrics.add_metric("SqueezeTimeBatchRequests", requests, "count", metric_type=MetricTypes.GAUGE)
            metrics.add_metric("SqueezeTimeBatchClips", clips, "count", metric_type=MetricTypes.GAUGE)
            metrics.add_time("SqueezeTimeHandlerTime", elapsed_ms, None, "ms")
        except Exception as e:  # noqa: BLE001 -- metrics never fail a batch
            logger.debug("metrics not recorded: %s", e)
