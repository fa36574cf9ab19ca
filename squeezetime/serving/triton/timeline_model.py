"""Triton python-backend model ``squeezetime_timeline``: a video -> one streamed response per window.

A decoupled model (``model_transaction_policy { decoupled: true }``): each request (``VIDEO`` [+ ``STRIDE``
seconds, ``TOPK``]) is answered by one response per window as soon as that window is scored (``START``, ``END``
seconds, top-k ``LABELS`` and ``SCORES``), then an empty response with the final flag. It runs
``squeezetime.timeline.Timeline`` (one sequential decode, windows every ``STRIDE`` s) in a ``DecodePool``
thread; the windows' clips go to the clip model (``squeezetime``) through BLS, all ready windows in one request,
so that they meet other requests' clips in its dynamic batcher. A client that cancels the stream (or
disconnects) stops the work: ``response_sender.is_cancelled()`` is asked every few decoded frames and before
each window is scored or sent. Request checks, metrics and the decode pool are ``squeezetime_video``'s
(``squeezetime.serving.triton.backend``).
"""
from __future__ import annotations

import json
import math
import threading
import time
from dataclasses import dataclass

import numpy as np

from ...errors import SqueezeTimeError
from ...video.decode import DecodeCancelled
from .. import metrics as m
from ..requests import RequestError, parse_topk
from .backend import (ERROR_CODES, CancelCheck, DecodePool, _error, _log, _pb, _single, read_video_settings,
                      video_field)


@dataclass
class TimelineJob:
    video: bytes
    stride: float
    topk: int
    sender: object
    received: float


def parse_stride(value, default: float) -> float:
    """Seconds between windows: a finite number > 0 (``None`` -> ``default``)."""
    if value is None:
        return default
    try:
        stride = float(value.decode("ascii") if isinstance(value, (bytes, np.bytes_)) else value)
    except (TypeError, ValueError, UnicodeDecodeError):
        raise RequestError("STRIDE must be a number of seconds") from None
    if not math.isfinite(stride) or stride <= 0:
        raise RequestError(f"STRIDE must be a number of seconds > 0, got {stride}")
    return stride


class TimelineModel:
    """``squeezetime_timeline``; see the module docstring."""

    def initialize(self, args: dict) -> None:
        if not _pb().using_decoupled_model_transaction_policy(json.loads(args["model_config"])):
            raise ValueError("squeezetime_timeline streams one response per window: it needs "
                             "model_transaction_policy { decoupled: true }")
        params = read_video_settings(self, args, default_decode_threads=2)
        data_config = self.classifier.data_config
        self.default_stride = parse_stride(params.get("default_stride") or "1", 1.0)
        # One timeline per decode thread; the others wait here, then in Triton's queue (max_queue_size).
        self.slots = threading.BoundedSemaphore(min(self.decode_threads,
                                                    int(params.get("max_in_flight", "0") or 0) or self.decode_threads))
        self.pool = DecodePool(self.decode_threads, name="squeezetime-timeline")
        _log("info", f"squeezetime_timeline: windows of {data_config.num_frames}x{data_config.frame_interval} "
                     f"frames, clips to {self.clip_model!r} in batches of <= {self.clip_batch}, "
                     f"{self.decode_threads} decode threads, {self.classifier.budget}")

    def read(self, request, received: float) -> TimelineJob:
        data = video_field(request, self.limits)
        stride = parse_stride(_single(request, "STRIDE"), self.default_stride)
        topk = parse_topk(_single(request, "TOPK"), self.default_topk, field="TOPK")
        return TimelineJob(data, stride, topk, request.get_response_sender(), received)

    def execute(self, requests):
        for request in requests:
            received = time.perf_counter()
            self.metrics.request()
            try:
                job = self.read(request, received)
            except Exception as e:  # noqa: BLE001 - a hostile request is still only its own input
                reason = None if isinstance(e, SqueezeTimeError) else "invalid_request"
                self._fail(request.get_response_sender(), e, reason)
                self.metrics.stage("total", time.perf_counter() - received)
                continue
            self.metrics.stage("preprocess", time.perf_counter() - received)
            if not self.slots.acquire(timeout=self.admission_timeout):
                self._fail(job.sender, None, "overloaded", "squeezetime_timeline: no room for another timeline")
                continue
            try:
                self.pool.submit(0, self.serve, job)
            except Exception as e:  # noqa: BLE001 - e.g. unloading: still answer
                self.slots.release()
                self._fail(job.sender, e, "internal", f"squeezetime_timeline is not serving: {e}")
        return None  # answered through the response senders

    # -- in a decode thread ---------------------------------------------------------------------------------------
    def serve(self, job: TimelineJob) -> None:
        """Stream the job's windows, then the final flag; an error (or a cancel) ends the stream instead."""
        from squeezetime.timeline import Timeline

        pb = _pb()
        cancelled = CancelCheck(job.sender)
        windows = 0
        try:
            timeline = Timeline(job.video, self.classifier.data_config, self.classifier.class_names,
                                lambda clips: self.scores(clips, cancelled), stride=job.stride, topk=job.topk,
                                batch_size=self.clip_batch, budget=self.classifier.budget, should_stop=cancelled)
            with timeline:
                for window in timeline:
                    job.sender.send(self.response(window))
                    windows += 1
            self.metrics.stage("decode", timeline.stats.decode_seconds)
            job.sender.send(flags=pb.TRITONSERVER_RESPONSE_COMPLETE_FINAL)
        except Exception as e:  # noqa: BLE001 - the request's answer
            self._fail(job.sender, e)
        finally:
            self.metrics.clips(windows)
            self.metrics.stage("total", time.perf_counter() - job.received)
            self.slots.release()

    def scores(self, clips: np.ndarray, cancelled) -> np.ndarray:
        """(N, T, H, W, 3) window clips -> (N, classes) PROBS from the clip model (BLS, one request)."""
        pb = _pb()
        if cancelled():
            raise DecodeCancelled("the request was cancelled before its windows were scored")
        started = time.perf_counter()
        try:
            request = pb.InferenceRequest(model_name=self.clip_model, requested_output_names=["PROBS"],
                                          inputs=[pb.Tensor("CLIP", np.ascontiguousarray(clips))])
            response = request.exec()
            if response.has_error():
                raise RuntimeError(f"{self.clip_model}: {response.error().message()}")
            return pb.get_output_tensor_by_name(response, "PROBS").as_numpy()
        finally:
            self.metrics.stage("inference", time.perf_counter() - started)

    @staticmethod
    def response(window):
        pb = _pb()
        labels = np.array([[label.encode("utf-8") for label, _ in window.top]], dtype=np.object_)
        return pb.InferenceResponse(output_tensors=[  # [1, ...]: the batch dimension of a one-video request
            pb.Tensor("START", np.array([[window.start]], np.float32)),
            pb.Tensor("END", np.array([[window.end]], np.float32)),
            pb.Tensor("LABELS", labels),
            pb.Tensor("SCORES", np.array([[p for _, p in window.top]], np.float32))])

    def _fail(self, sender, error: BaseException | None, reason: str | None = None, message: str | None = None):
        reason = reason or m.rejection_reason(error)
        if message is None:
            message = str(error) if isinstance(error, SqueezeTimeError) else \
                f"timeline failed: {type(error).__name__}: {error}"
        self.metrics.rejected(reason)
        try:
            sender.send(_error(message, ERROR_CODES.get(reason, "INVALID_ARG")),
                        flags=_pb().TRITONSERVER_RESPONSE_COMPLETE_FINAL)
        except Exception as e:  # noqa: BLE001 - e.g. the client is gone
            _log("verbose", f"squeezetime_timeline: could not send an error response ({type(e).__name__}: {e})")

    def finalize(self) -> None:
        self.pool.shutdown()


__all__ = ["TimelineModel", "parse_stride"]
