"""Triton python-backend model ``squeezetime_timeline``: a video -> one streamed response per window.

A decoupled model (``model_transaction_policy { decoupled: true }``): each request (``VIDEO`` [+ ``STRIDE``
seconds, ``TOPK``]) is answered by one response per window as soon as that window is scored (``START``, ``END``
seconds, top-k ``LABELS`` and ``SCORES``), then an empty response with the final flag. It runs
``squeezetime.timeline.Timeline`` (one sequential decode, windows every ``STRIDE`` s) in a decode-pool thread;
the windows' clips go to the clip model (``squeezetime``) through BLS, all ready windows in one request, so that
they meet other requests' clips in its dynamic batcher. A client that cancels the stream (or disconnects) stops the
work: ``response_sender.is_cancelled()`` is asked every few decoded frames and before each window is scored or
sent. Reading, admission, metrics and error answers are ``RequestModel``'s.
"""
from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass

import numpy as np

from ...errors import DecodeCancelled
from ...timeline import Timeline
from ..requests import parse_stride, parse_topk
from .decode_pool import CancelCheck
from .python_backend import bls_probs, pb_utils, probs_of, single_element
from .request_model import Job, RequestModel, video_field


@dataclass
class TimelineJob(Job):
    stride: float = 1.0


class TimelineModel(RequestModel):
    """``squeezetime_timeline``; see the module docstring."""
    name = "squeezetime_timeline"
    default_decode_threads = 2

    def check_config(self, model_config: dict) -> None:
        if not pb_utils().using_decoupled_model_transaction_policy(model_config):
            raise ValueError("squeezetime_timeline streams one response per window: it needs "
                             "model_transaction_policy { decoupled: true }")

    def in_flight_limit(self) -> int:
        """One timeline per decode thread; the others wait for room, then in Triton's queue (max_queue_size)."""
        threads = self.settings.decode_threads
        return min(threads, self.settings.max_in_flight or threads)

    def ready(self) -> str:
        d = self.settings.data_config
        return f"windows of {d.num_frames}x{d.frame_interval} frames"

    def read(self, request, received: float) -> TimelineJob:
        data = video_field(request, self.settings.limits)
        stride = parse_stride(single_element(request, "STRIDE"), self.settings.default_stride)
        topk = parse_topk(single_element(request, "TOPK"), self.settings.default_topk, field="TOPK")
        return TimelineJob(data, topk, request.get_response_sender(), received, stride)

    async def serve(self, job: TimelineJob, cancelled: CancelCheck) -> None:
        await asyncio.wrap_future(self.pool.submit(0, self.stream, job, cancelled))

    def stream(self, job: TimelineJob, cancelled: CancelCheck) -> None:
        """In a decode thread: send the job's windows as they are scored, then the final flag."""
        windows = 0
        try:
            timeline = Timeline(job.video, self.classifier.data_config, self.classifier.class_names,
                                lambda clips: self.scores(clips, cancelled), stride=job.stride, topk=job.topk,
                                batch_size=self.settings.clip_batch, budget=self.classifier.budget,
                                should_stop=cancelled)
            with timeline:
                for window in timeline:
                    job.sender.send(self.response(window))
                    windows += 1
            self.metrics.stage("decode", timeline.stats.decode_seconds)
            self.send_final(job.sender)
        finally:
            self.metrics.clips(windows)

    def scores(self, clips: np.ndarray, cancelled) -> np.ndarray:
        """(N, T, H, W, 3) window clips -> (N, classes) PROBS from the clip model (BLS, one request)."""
        if cancelled():
            raise DecodeCancelled("the request was cancelled before its windows were scored")
        model = self.settings.clip_model
        with self.metrics.timed("inference"):
            return probs_of(model, bls_probs(model, np.ascontiguousarray(clips)).exec())

    @staticmethod
    def response(window):
        pb = pb_utils()
        labels = np.array([[label.encode("utf-8") for label, _ in window.top]], dtype=np.object_)
        return pb.InferenceResponse(output_tensors=[  # [1, ...]: the batch dimension of a one-video request
            pb.Tensor("START", np.array([[window.start]], np.float32)),
            pb.Tensor("END", np.array([[window.end]], np.float32)),
            pb.Tensor("LABELS", labels),
            pb.Tensor("SCORES", np.array([[p for _, p in window.top]], np.float32))])


__all__ = ["TimelineJob", "TimelineModel"]
