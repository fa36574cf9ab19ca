"""The base of our Triton models that take encoded videos (``squeezetime_video``, ``squeezetime_timeline``).

``RequestModel`` owns everything the two share, so it is written once:

- the settings (``VideoModelSettings``, one frozen dataclass read from the model's config);
- ``execute``: each request is read and checked (``read``, the subclass's), admitted (at most ``max_in_flight``
  requests in the model; beyond that ``execute`` waits up to ``admission_timeout`` s, then answers UNAVAILABLE)
  and handed to the model's own event loop, and ``execute`` returns: every request is answered through its
  response sender, so one expensive video does not hold up cheap ones;
- the decode pool (``decode_threads`` threads; PyAV releases the GIL), the cancellation check handed to
  ``serve`` (``CancelCheck``: has the client cancelled?), metrics;
- ``fail``: a refused request's answer, with the gRPC status and the metric of its error's ``Refusal``.

A subclass supplies how a request is read (``read``: fields -> a job) and served (``serve``: a coroutine on the
model's loop that answers the job's response sender), and may check its config (``check_config``), add to its
start (``ready``) and bound its requests in flight (``in_flight_limit``).
"""
from __future__ import annotations

import asyncio
import json
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import torch

from ...classifier import Classifier
from ...data_config import DataConfig
from ...errors import OverloadedError, SqueezeTimeError, refusal_of
from ...video import DecodeBudget
from ..requests import (DEFAULT_MAX_VIDEO_BYTES, RequestError, RequestLimits, check_video_size, decode_budget,
                        parse_stride, setting_flag)
from .decode_pool import CancelCheck, DecodePool
from .python_backend import error_response, log, metrics_recorder, parameters, pb_utils, single_element

DATA_CONFIG_FILE = "data_config.json"
LABELS_FILE = "labels.txt"


def read_labels(path: Path) -> list[str]:
    return [line.rstrip("\n") for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


@dataclass(frozen=True)
class VideoModelSettings:
    """What a video-taking model reads from its config (``parameters``) and its directory (data config, labels),
    written there by ``squeezetime triton-repo``."""
    data_config: DataConfig
    class_names: tuple[str, ...]
    budget: DecodeBudget
    clip_model: str             # the BLS target
    clip_batch: int             # clips per BLS request (the clip model's max_batch_size)
    limits: RequestLimits
    default_topk: int
    default_views: str
    default_stride: float       # seconds between timeline windows
    decode_threads: int
    max_in_flight: int          # 0: the model's default
    num_threads: int            # torch threads of the model's process
    warmup: bool

    @property
    def admission_timeout(self) -> float:
        """How long a request waits for room in the model: twice the decode budget, plus slack."""
        return 2 * self.budget.max_seconds + 60.0

    @classmethod
    def from_config(cls, model_config: dict, model_dir: Path, default_decode_threads: int) -> "VideoModelSettings":
        params = parameters(model_config)
        data_config = DataConfig.from_dict(json.loads((model_dir / DATA_CONFIG_FILE).read_text(encoding="utf-8")))
        return cls(
            data_config=data_config,
            class_names=tuple(read_labels(model_dir / params.get("labels", LABELS_FILE))),
            budget=decode_budget(params),
            clip_model=params.get("clip_model", "squeezetime"),
            clip_batch=max(1, int(params.get("clip_max_batch_size", "8"))),
            limits=RequestLimits(max_video_bytes=int(params.get("max_video_bytes", DEFAULT_MAX_VIDEO_BYTES))),
            default_topk=int(params.get("default_topk", "5")),
            default_views=params.get("default_views") or data_config.default_views,
            default_stride=parse_stride(params.get("default_stride") or None, 1.0, field="default_stride"),
            decode_threads=max(1, int(params.get("decode_threads", "0") or 0) or default_decode_threads),
            max_in_flight=max(0, int(params.get("max_in_flight", "0") or 0)),
            num_threads=int(params.get("num_threads", "1") or 1),
            warmup=setting_flag(params.get("warmup"), True))


def video_field(request, limits: RequestLimits) -> bytes:
    """A request's ``VIDEO`` (one encoded video file, BYTES) as bytes, within ``max_video_bytes``."""
    video = single_element(request, "VIDEO")
    if video is None:
        raise RequestError("input VIDEO is missing")
    if not isinstance(video, bytes):  # numpy's bytes_ is a bytes
        raise RequestError(f"VIDEO must be BYTES (an encoded video file), got {type(video).__name__}")
    data = bytes(video)
    check_video_size(len(data), limits)
    return data


@dataclass
class Job:
    """A request, read and checked, on its way through the model; subclasses add their fields."""
    video: bytes
    topk: int
    sender: object          # the request's InferenceResponseSender (the request itself is released by then)
    received: float         # time.perf_counter() when execute saw it


class RequestModel:
    """The Triton model life cycle (``initialize``, ``execute``, ``finalize``) of a video-taking model; see the
    module docstring."""
    name = "squeezetime_video"       # in logs and error messages
    default_decode_threads = 4

    # -- supplied by the subclass ---------------------------------------------------------------------------------
    def read(self, request, received: float) -> Job:
        """Validate one request's fields (not its video) -> a job holding copies of what it needs."""
        raise NotImplementedError

    async def serve(self, job: Job, cancelled: CancelCheck) -> None:
        """On the model's event loop: do the job and answer its sender; an exception is the request's answer.
        ``cancelled()`` says whether the client has cancelled (pass it to the decode, ask it before each step)."""
        raise NotImplementedError

    def check_config(self, model_config: dict) -> None:
        """Refuse a config this model cannot serve (raise ValueError)."""

    def ready(self) -> str:
        """The last step of ``initialize``; returns what the log line says of the model."""
        return ""

    def in_flight_limit(self) -> int:
        return self.settings.max_in_flight or 2 * self.settings.decode_threads

    # -- life cycle -------------------------------------------------------------------------------------------------
    def initialize(self, args: dict) -> None:
        config = json.loads(args["model_config"])
        self.check_config(config)
        self.settings = VideoModelSettings.from_config(config, Path(args["model_repository"]),
                                                       self.default_decode_threads)
        torch.set_num_threads(self.settings.num_threads)
        # decode-only: the network runs in the clip model, reached through BLS
        self.classifier = Classifier(None, self.settings.data_config, list(self.settings.class_names),
                                     budget=self.settings.budget)
        self.metrics = metrics_recorder(args["model_name"])
        self.max_in_flight = self.in_flight_limit()
        self.slots = threading.BoundedSemaphore(self.max_in_flight)
        self.pool = DecodePool(self.settings.decode_threads, name=f"{self.name}-decode")
        # The model's own event loop: serving coroutines; BLS calls run in its default executor (one per request in
        # flight), blocking for the clip model's answer.
        self.loop = asyncio.new_event_loop()
        self.loop.set_default_executor(ThreadPoolExecutor(self.max_in_flight + 2, thread_name_prefix=f"{self.name}-bls"))
        self.loop_thread = threading.Thread(target=self.loop.run_forever, name=f"{self.name}-loop", daemon=True)
        self.loop_thread.start()
        described = self.ready()
        s = self.settings
        log("info", f"{self.name}: {self.classifier.num_classes} classes, clips to {s.clip_model!r} in batches of "
                    f"<= {s.clip_batch}, videos up to {s.limits.max_video_bytes} bytes, {s.budget}, "
                    f"{s.decode_threads} decode threads, <= {self.max_in_flight} requests in flight"
                    + (f", {described}" if described else ""))

    def execute(self, requests):
        for request in requests:
            self.accept(request, time.perf_counter())
        return None  # every request is answered through its response sender

    def accept(self, request, received: float) -> None:
        """Read, admit and hand over one request; a request refused here is answered here."""
        self.metrics.request()
        try:
            job = self.read(request, received)
        except Exception as e:  # noqa: BLE001 - whatever a hostile request does, it is still its own input
            self.metrics.stage("preprocess", time.perf_counter() - received)
            if not isinstance(e, SqueezeTimeError):
                e = RequestError(f"unreadable request: {type(e).__name__}: {e}")
            self.fail(request.get_response_sender(), e)
            self.metrics.stage("total", time.perf_counter() - received)
            return
        self.metrics.stage("preprocess", time.perf_counter() - received)
        timeout = self.settings.admission_timeout
        if not self.slots.acquire(timeout=timeout):
            self.fail(job.sender, OverloadedError(f"{self.name}: no room after {timeout:.0f} s "
                                                  f"({self.max_in_flight} requests in flight)"))
            self.metrics.stage("total", time.perf_counter() - received)
            return
        try:
            asyncio.run_coroutine_threadsafe(self.answer(job), self.loop)
        except Exception as e:  # noqa: BLE001 - e.g. the loop is gone (unloading): still answer the request
            self.slots.release()
            self.fail(job.sender, e, f"{self.name} is not serving: {type(e).__name__}: {e}")
            self.metrics.stage("total", time.perf_counter() - received)

    async def answer(self, job: Job) -> None:
        """``serve`` the job; its failure is its answer; then free its slot."""
        try:
            await self.serve(job, CancelCheck(job.sender))
        except Exception as e:  # noqa: BLE001 - the request's answer
            self.fail(job.sender, e)
        finally:
            self.metrics.stage("total", time.perf_counter() - job.received)
            self.slots.release()

    def send_final(self, sender, response=None) -> None:
        """Send the last response of a request (or only the final flag)."""
        flags = pb_utils().TRITONSERVER_RESPONSE_COMPLETE_FINAL
        if response is None:
            sender.send(flags=flags)
        else:
            sender.send(response, flags=flags)

    def fail(self, sender, error: BaseException, message: str | None = None) -> None:
        """Answer a request with ``error``: the gRPC status of its refusal (INVALID_ARG for the client's mistakes,
        CANCELLED, UNAVAILABLE, INTERNAL), counted by that refusal."""
        refusal = refusal_of(error)
        if message is None:
            message = str(error) if isinstance(error, SqueezeTimeError) else \
                f"{self.name} failed: {type(error).__name__}: {error}"
        self.metrics.rejected(refusal)
        try:
            self.send_final(sender, error_response(message, refusal))
        except Exception as e:  # noqa: BLE001 - e.g. the response factory is gone (client cancelled)
            log("verbose", f"{self.name}: could not send an error response ({type(e).__name__}: {e})")

    def finalize(self) -> None:
        self.pool.shutdown()
        loop = getattr(self, "loop", None)
        if loop is not None:
            loop.call_soon_threadsafe(loop.stop)
            self.loop_thread.join(timeout=10)


__all__ = ["DATA_CONFIG_FILE", "Job", "LABELS_FILE", "RequestModel", "VideoModelSettings", "read_labels",
           "video_field"]
