"""Triton python-backend model ``squeezetime_video``: an encoded video [+ ``VIEWS``, ``TOPK``] -> top-k ``LABELS``
and ``SCORES``, exactly as ``Classifier.classify``.

It decodes here (``Classifier.clips``, in the decode pool, cheapest video first), sends the clips to the clip model
``squeezetime`` through BLS (``async_exec``), so clips of concurrent requests meet in the clip model's dynamic
batcher, and summarises (``Classifier.summarize``). A request the client cancelled stops its decode (checked every
few frames) and its scoring. Reading, admission, cancellation, metrics and error answers are ``RequestModel``'s.
"""
from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass

import numpy as np

from ...errors import DecodeCancelled
from ...synthetic.generator import warmup_video
from ..requests import parse_topk, parse_views, video_clips
from ..warmup import in_every_thread
from .decode_pool import CancelCheck, decode_cost
from .python_backend import bls_probs, cpu_outputs, pb_utils, probs_of, single_element
from .request_model import Job, RequestModel, video_field


@dataclass
class VideoJob(Job):
    views: str = ""


class VideoModel(RequestModel):
    """``squeezetime_video``: decodes each video (thread pool), scores its clips in ``squeezetime`` (BLS),
    summarises, answers each request through its response sender as soon as it is done."""
    name = "squeezetime_video"
    default_decode_threads = 4

    def ready(self) -> str:
        return f"warm-up {self.warm_up()}" if self.settings.warmup else "warm-up off"

    def warm_up(self) -> str:
        """Decode a tiny generated video in every decode thread (codec set-up, resizing kernels, the threads
        themselves) before the model reports ready. Returns what it did, for the log."""
        started = time.perf_counter()
        d = self.classifier.data_config
        video = warmup_video(d.num_frames, max(v.short_side for v in d.views.values()))
        in_every_thread(lambda job: self.pool.submit(0, job), self.settings.decode_threads,
                        lambda: self.classifier.clips(video, d.default_views))
        asyncio.run_coroutine_threadsafe(asyncio.sleep(0), self.loop).result(timeout=30)
        return f"{time.perf_counter() - started:.2f} s"

    def read(self, request, received: float) -> VideoJob:
        data = video_field(request, self.settings.limits)
        views = parse_views(single_element(request, "VIEWS"), self.classifier, self.settings.default_views,
                            field="VIEWS")
        topk = parse_topk(single_element(request, "TOPK"), self.settings.default_topk, field="TOPK")
        return VideoJob(data, topk, request.get_response_sender(), received, views)

    async def serve(self, job: VideoJob, cancelled: CancelCheck) -> None:
        """Decode (thread pool), score (BLS), summarise, answer."""
        cost = decode_cost(job.video, self.classifier.data_config.view(job.views))
        clips = await asyncio.wrap_future(self.pool.submit(cost, self.decode, job, cancelled, time.perf_counter()))
        if cancelled():
            raise DecodeCancelled("the request was cancelled before its clips were scored")
        with self.metrics.timed("inference"):
            probs = await self.scores(clips, cancelled)
        started = time.perf_counter()
        response = self.response(self.classifier.summarize(probs, job.topk))
        self.metrics.stage("postprocess", time.perf_counter() - started)
        self.metrics.clips(len(clips))
        self.send_final(job.sender, response)

    def decode(self, job: VideoJob, cancelled: CancelCheck, queued: float) -> np.ndarray:
        """In a decode thread: the job's video -> uint8 clips (V, T, crop, crop, 3)."""
        started = time.perf_counter()
        self.metrics.stage("queue", started - queued)
        with self.metrics.timed("decode"):
            return video_clips(self.classifier, job.video, job.views, self.settings.limits, should_stop=cancelled)

    async def scores(self, clips: np.ndarray, cancelled=lambda: False) -> np.ndarray:
        """(N, T, H, W, 3) clips -> (N, classes) PROBS from the clip model, one chunk of <= clip_max_batch_size
        clips at a time (so a cheap request's clips queue behind one chunk of each request in flight, not behind
        all their clips)."""
        model, batch = self.settings.clip_model, self.settings.clip_batch
        out = []
        for i in range(0, len(clips), batch):
            if cancelled():
                raise DecodeCancelled("the request was cancelled while its clips were scored")
            request = bls_probs(model, np.ascontiguousarray(clips[i:i + batch]), **cpu_outputs())
            out.append(probs_of(model, await request.async_exec()))
        return np.concatenate(out)

    @staticmethod
    def response(top):
        pb = pb_utils()
        labels = np.array([[label.encode("utf-8") for label, _ in top]], dtype=np.object_)
        scores = np.array([[p for _, p in top]], dtype=np.float32)
        return pb.InferenceResponse(output_tensors=[pb.Tensor("LABELS", labels), pb.Tensor("SCORES", scores)])


__all__ = ["VideoJob", "VideoModel"]
