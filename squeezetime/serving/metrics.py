"""What the servers measure, named once for both transports (Triton's python models, the TorchServe handler).

Each adapter records into its server's own metrics endpoint (Triton: ``pb_utils.MetricFamily``, scraped at
``http://HOST:METRICS_PORT/metrics``; TorchServe: ``context.metrics``, exported by the frontend in
``metrics_mode=prometheus`` at ``http://HOST:METRICS_PORT/metrics``, declared in
``serving/torchserve/metrics.yaml``). See docs/metrics.md and deploy/grafana/squeezetime.json.

- ``squeezetime_stage_seconds`` (histogram): seconds per request and stage (``STAGES``);
- ``squeezetime_requests_total`` (counter): requests that reached the model (good and rejected);
- ``squeezetime_rejections_total`` (counter): requests answered with an error, by ``reason``: the refused error's
  own ``squeezetime.errors.Refusal`` (``refusal_of``), described in ``REASONS``;
- ``squeezetime_clips_total`` (counter): clips the network scored.

The servers' own metrics complement these: Triton's ``nv_inference_queue_duration_us`` (time in its scheduler
queue), TorchServe's ``ts_queue_latency_microseconds``.
"""
from __future__ import annotations

import time
from contextlib import contextmanager

from ..errors import Refusal

STAGE_SECONDS = "squeezetime_stage_seconds"
REQUESTS = "squeezetime_requests_total"
REJECTIONS = "squeezetime_rejections_total"
CLIPS = "squeezetime_clips_total"

STAGES = {
    "queue": "waiting inside the model for a decode worker (Triton's own queue: nv_inference_queue_duration_us)",
    "preprocess": "reading and checking a request's fields, without decoding",
    "decode": "encoded video -> uint8 clips (decoding, sampling, resizing, cropping), refused requests included",
    "inference": "the network on the clips (video model: the round trip to the clip model, its queue included)",
    "postprocess": "averaging the views, top-k, building the response",
    "total": "from the request reaching the model to its response",
}
REASONS = {
    Refusal.INVALID_REQUEST: "a field is missing, malformed or out of range (views, top-k, clip shape...)",
    Refusal.TOO_LARGE: "the upload is over the size limit (max_video_bytes)",
    Refusal.OVER_BUDGET: "the video is over the decode budget (header: max_pixels, max_frames, max_duration, "
                         "max_pixel_rate; work: max_decoded_frames, max_decode_seconds)",
    Refusal.STILL_IMAGE: "an image file, not a video (allow_still_images)",
    Refusal.UNDECODABLE: "not a readable video (garbage, truncated, no video stream)",
    Refusal.CANCELLED: "the client cancelled the request or gave up waiting",
    Refusal.OVERLOADED: "no room for another request in the model",
    Refusal.INTERNAL: "a failure on the server's side",
}
# Seconds. TorchServe's Prometheus histograms use the client library's default buckets (0.005 .. 10 s).
BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0)

DESCRIPTIONS = {
    STAGE_SECONDS: "Seconds a request spent in each stage of a squeezetime model",
    REQUESTS: "Requests that reached a squeezetime model",
    REJECTIONS: "Requests of a squeezetime model answered with an error, by reason",
    CLIPS: "Clips scored by the network",
}


class Recorder:
    """What an adapter records; this base records nothing (unit tests, a server without metrics)."""

    def stage(self, stage: str, seconds: float) -> None:
        pass

    def request(self, count: int = 1) -> None:
        pass

    def rejected(self, reason: Refusal) -> None:
        pass

    def clips(self, count: int) -> None:
        pass

    @contextmanager
    def timed(self, stage: str):
        """``with recorder.timed("decode"): ...`` observes the block's seconds (also when it raises)."""
        start = time.perf_counter()
        try:
            yield
        finally:
            self.stage(stage, time.perf_counter() - start)


def check_stage(stage: str) -> str:
    if stage not in STAGES:
        raise ValueError(f"unknown stage {stage!r}; stages are {list(STAGES)}")
    return stage


def check_reason(reason: Refusal) -> str:
    """The metric label of a refusal. Only a ``Refusal`` is accepted: a reason is the refused error's type
    (``refusal_of``), never a string made up at the call site."""
    if not isinstance(reason, Refusal):
        raise TypeError(f"a rejection reason is a squeezetime.errors.Refusal, got {reason!r}")
    return reason.value


class Stopwatch:
    """Seconds spent inside ``with stopwatch.running():`` blocks, summed (e.g. the decode inside reading a
    request, so that the rest of reading it is timed apart)."""

    def __init__(self):
        self.seconds = 0.0

    @contextmanager
    def running(self):
        start = time.perf_counter()
        try:
            yield
        finally:
            self.seconds += time.perf_counter() - start


__all__ = ["BUCKETS", "CLIPS", "DESCRIPTIONS", "REASONS", "REJECTIONS", "REQUESTS", "Recorder", "STAGES",
           "STAGE_SECONDS", "Stopwatch", "check_reason", "check_stage"]
