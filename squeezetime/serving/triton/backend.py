"""Triton python-backend models: thin adapters between Triton's requests and ``squeezetime.Classifier``.

- ``ClipModel`` (model ``squeezetime``): uint8 clips ``CLIP [B, T, crop, crop, 3]`` -> ``LOGITS``, ``PROBS``
  (``Classifier.infer``).
- ``VideoModel`` (model ``squeezetime_video``): an encoded video -> top-k ``LABELS`` and ``SCORES``, exactly as
  ``Classifier.classify``: it decodes here (``Classifier.clips``), sends the clips to the clip model through BLS
  (``async_exec``), so clips of concurrent requests meet in the clip model's dynamic batcher, and summarises
  (``Classifier.summarize``). Decoding runs off the request path: ``execute`` only reads and checks each
  request, then hands it to the model's own event loop (one thread) and returns; the video is decoded in a pool of
  ``decode_threads`` threads (PyAV releases the GIL) and each request is answered through its response sender
  as soon as it is done, so one expensive video does not hold up cheap ones. At most ``max_in_flight`` requests
  are in the model at once; beyond that ``execute`` waits, and Triton's queue policy (``max_queue_size``, queue
  timeout) applies. A request the client cancelled stops its decode (``response_sender.is_cancelled()``,
  checked every few frames) and its scoring.

Both record Prometheus metrics on Triton's metrics endpoint (``squeezetime.serving.metrics``: per-stage
histograms, requests, clips, rejections by reason).

Shapes and names come from the model's config; the class names from its ``labels.txt`` and the pipeline from
``data_config.json`` (both written by ``squeezetime triton-repo``). Requests are untrusted: each is validated
on its own by ``squeezetime.serving.requests``; a bad one gets ``INVALID_ARG`` (gRPC INVALID_ARGUMENT) with an
ASCII message while the others of the batch are answered normally. This module runs inside the stub process,
where ``triton_python_backend_utils`` is importable.
"""
from __future__ import annotations

import asyncio
import itertools
import json
import queue
import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ...errors import SqueezeTimeError
from ...video.decode import DecodeCancelled
from .. import metrics as m
from ..devices import require_cuda, triton_device, warm_up_graphs
from ..requests import (DEFAULT_MAX_VIDEO_BYTES, RequestError, RequestLimits, ascii_message, check_clip_array,
                        check_video_size, decode_budget, parse_topk, parse_views, setting_flag,
                        video_clips)

DATA_CONFIG_FILE = "data_config.json"
LABELS_FILE = "labels.txt"


def _pb():
    import triton_python_backend_utils as pb_utils  # only inside tritonserver's python backend stub
    return pb_utils


def parameters(model_config: dict) -> dict[str, str]:
    return {k: v.get("string_value", "") for k, v in model_config.get("parameters", {}).items()}


def read_labels(path: Path) -> list[str]:
    return [line.rstrip("\n") for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


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
    pb = _pb()
    if not hasattr(pb, "PreferredMemory"):
        return {}
    return {"preferred_memory": pb.PreferredMemory(pb.TRITONSERVER_MEMORY_CPU, 0)}


def _error(message: str, code: str = "INVALID_ARG"):
    pb = _pb()
    return pb.InferenceResponse(error=pb.TritonError(ascii_message(message), getattr(pb.TritonError, code)))


def _log(level: str, message: str) -> None:
    try:
        getattr(_pb().Logger, f"log_{level}")(message)
    except Exception:  # noqa: BLE001 - logging must never fail a request
        print(message, flush=True)


def _single(request, name: str):
    """The one element of optional input ``name`` of a request, or None when it is absent."""
    tensor = _pb().get_input_tensor_by_name(request, name)
    if tensor is None:
        return None
    array = tensor.as_numpy()
    if array.size != 1:
        raise RequestError(f"{name} must hold exactly one element per request, got shape {list(array.shape)}")
    return array.reshape(-1)[0]


def video_field(request, limits: RequestLimits) -> bytes:
    """A request's ``VIDEO`` (one encoded video file, BYTES) as bytes, within ``max_video_bytes``."""
    video = _single(request, "VIDEO")
    if video is None:
        raise RequestError("input VIDEO is missing")
    if not isinstance(video, (bytes, np.bytes_)):
        raise RequestError(f"VIDEO must be BYTES (an encoded video file), got {type(video).__name__}")
    data = bytes(video)
    check_video_size(len(data), limits)
    return data


class TritonMetrics(m.Recorder):
    """``squeezetime.serving.metrics`` through the python backend's custom metrics (``pb_utils.MetricFamily``), on
    Triton's metrics endpoint. Labels: ``model`` (and ``stage`` / ``reason``). Metrics never fail a request: an
    error while recording is caught (and logged, once).

    Thread safety: the stub's ``Metric.observe/increment`` are not (24.10: each call releases the GIL and then
    replaces the metric's shared-memory block, so two threads on one metric hand the server a freed block and
    tritonserver aborts with std::bad_alloc). Every call here holds one lock."""

    def __init__(self, model: str):
        pb = _pb()
        family = pb.MetricFamily
        # The families must outlive their metrics (and the server removes a family when its object is freed).
        self._families = {
            m.STAGE_SECONDS: family(m.STAGE_SECONDS, m.DESCRIPTIONS[m.STAGE_SECONDS], family.HISTOGRAM),
            m.REQUESTS: family(m.REQUESTS, m.DESCRIPTIONS[m.REQUESTS], family.COUNTER),
            m.REJECTIONS: family(m.REJECTIONS, m.DESCRIPTIONS[m.REJECTIONS], family.COUNTER),
            m.CLIPS: family(m.CLIPS, m.DESCRIPTIONS[m.CLIPS], family.COUNTER),
        }
        f = self._families
        self._stages = {stage: f[m.STAGE_SECONDS].Metric(labels={"model": model, "stage": stage},
                                                          buckets=list(m.BUCKETS)) for stage in m.STAGES}
        self._requests = f[m.REQUESTS].Metric(labels={"model": model})
        self._rejections = {reason: f[m.REJECTIONS].Metric(labels={"model": model, "reason": reason})
                            for reason in m.REASONS}
        self._clips = f[m.CLIPS].Metric(labels={"model": model})
        self._warned = False
        self._lock = threading.Lock()

    def _do(self, fn, value) -> None:
        try:
            with self._lock:
                fn(value)
        except Exception as e:  # noqa: BLE001 - metrics never fail a request
            if not self._warned:
                self._warned = True
                _log("warn", f"squeezetime: a metric could not be recorded: {type(e).__name__}: {e}")

    def stage(self, stage: str, seconds: float) -> None:
        self._do(self._stages[m.check_stage(stage)].observe, max(0.0, float(seconds)))

    def request(self, count: int = 1) -> None:
        self._do(self._requests.increment, float(count))

    def rejected(self, reason: str) -> None:
        self._do(self._rejections[m.check_reason(reason)].increment, 1.0)

    def clips(self, count: int) -> None:
        self._do(self._clips.increment, float(count))


def _recorder(model: str) -> m.Recorder:
    try:
        return TritonMetrics(model)
    except Exception as e:  # noqa: BLE001 - a server without custom metrics (--allow-metrics=false) still serves
        _log("warn", f"squeezetime: {model}: no custom metrics ({type(e).__name__}: {e})")
        return m.Recorder()


ERROR_CODES = {"cancelled": "CANCELLED", "overloaded": "UNAVAILABLE", "internal": "INTERNAL"}


class ClipModel:
    """``squeezetime``: ``Classifier.infer`` on batches of sampled, cropped RGB clips."""

    def initialize(self, args: dict) -> None:
        import squeezetime

        config = json.loads(args["model_config"])
        params = parameters(config)
        version_dir = Path(args["model_repository"]) / args["model_version"]
        threads = int(params.get("num_threads", "0") or 0) or None
        max_batch = max(1, int(config.get("max_batch_size", 8)))
        self.device = instance_device(args)
        self.classifier = squeezetime.load(str(version_dir / params.get("checkpoint", "model.pth")),
                                           backend=params.get("backend", "auto") or "auto",
                                           dtype=params.get("dtype") or None, device=self.device, threads=threads,
                                           batch_size=max_batch)
        d = self.classifier.data_config
        dims = input_dims(config, "CLIP")
        if dims != [d.num_frames, d.crop_size, d.crop_size, 3]:
            raise ValueError(f"config CLIP dims {dims} do not match the checkpoint's data config "
                             f"[{d.num_frames}, {d.crop_size}, {d.crop_size}, 3]")
        self.limits = RequestLimits(max_clips=max(1, int(config.get("max_batch_size", 1))))
        self.metrics = _recorder(args["model_name"])
        graphs = warm_up_graphs(self.classifier, max_batch)  # batches of <= max_batch meet these buckets only
        _log("info", f"squeezetime: {args['model_name']} loaded on {self.device}: {self.classifier!r}"
                     + (f", CUDA graphs captured for batches {list(graphs)}" if graphs else ""))

    def execute(self, requests):
        pb = _pb()
        started = time.perf_counter()
        self.metrics.request(len(requests))
        arrays, responses = [], [None] * len(requests)
        for i, request in enumerate(requests):
            clip = pb.get_input_tensor_by_name(request, "CLIP")
            try:
                if clip is None:
                    raise RequestError("input CLIP is missing")
                arrays.append((i, check_clip_array(clip.as_numpy(), self.classifier, self.limits)))
            except SqueezeTimeError as e:
                self.metrics.rejected(m.rejection_reason(e))
                responses[i] = _error(str(e))
        self.metrics.stage("preprocess", time.perf_counter() - started)
        if arrays:
            t = time.perf_counter()
            try:
                scores = self.classifier.infer(np.concatenate([a for _, a in arrays]))
                parts = zip(scores.logits.split([len(a) for _, a in arrays]),
                            scores.probs.split([len(a) for _, a in arrays]))
                for (i, _), (logits, probs) in zip(arrays, parts):
                    responses[i] = self._response(logits, probs)
            except Exception:  # noqa: BLE001 - find the request that broke the batch; answer the others
                for i, array in arrays:
                    try:
                        responses[i] = self._response(*self.classifier.infer(array))
                    except Exception as e:  # noqa: BLE001
                        self.metrics.rejected("internal")
                        responses[i] = _error(f"squeezetime failed on this request: {type(e).__name__}: {e}",
                                              "INTERNAL")
            self.metrics.stage("inference", time.perf_counter() - t)
            self.metrics.clips(sum(len(a) for _, a in arrays))
        self.metrics.stage("total", time.perf_counter() - started)
        return responses

    @staticmethod
    def _response(logits, probs):
        pb = _pb()
        return pb.InferenceResponse(output_tensors=[
            pb.Tensor("LOGITS", np.ascontiguousarray(logits.numpy(), np.float32)),
            pb.Tensor("PROBS", np.ascontiguousarray(probs.numpy(), np.float32))])

    def finalize(self) -> None:
        self.classifier = None


class DecodePool:
    """``threads`` worker threads that take the cheapest waiting job first (``cost``: the caller's estimate), so
    that a cheap video waits only for a free thread, never behind a queue of expensive ones. Jobs return
    ``concurrent.futures.Future`` objects (``asyncio.wrap_future`` them on an event loop)."""

    def __init__(self, threads: int, name: str = "squeezetime-decode"):
        self._queue: queue.PriorityQueue = queue.PriorityQueue()
        self._order = itertools.count()
        self._closed = False
        self._threads = [threading.Thread(target=self._work, name=f"{name}-{i}", daemon=True) for i in range(threads)]
        for thread in self._threads:
            thread.start()

    def submit(self, cost: float, fn, *args) -> Future:
        if self._closed:
            raise RuntimeError("the decode pool is shut down")
        future: Future = Future()
        self._queue.put((float(cost), next(self._order), future, fn, args))
        return future

    def _work(self) -> None:
        while True:
            _, _, future, fn, args = self._queue.get()
            if future is None:
                return
            if not future.set_running_or_notify_cancel():
                continue
            try:
                result = fn(*args)
            except BaseException as e:  # noqa: BLE001 - the job's own outcome
                future.set_exception(e)
            else:
                future.set_result(result)

    def shutdown(self, timeout: float = 10.0) -> None:
        """Cancel waiting jobs, let running ones finish (up to ``timeout`` s in all), stop the threads."""
        self._closed = True
        while True:
            try:
                _, _, future, _, _ = self._queue.get_nowait()
            except queue.Empty:
                break
            if future is not None:
                future.cancel()
        for _ in self._threads:
            self._queue.put((float("-inf"), next(self._order), None, None, ()))
        deadline = time.monotonic() + timeout
        for thread in self._threads:
            thread.join(timeout=max(0.0, deadline - time.monotonic()))


def decode_cost(video: bytes, view) -> float:
    """A decode's cost estimate for ``DecodePool``: encoded bytes (frames x pixels, roughly) x clips kept."""
    return float(len(video)) * view.num_clips * (3 if view.three_crop else 1)


@dataclass
class VideoJob:
    """One request of ``squeezetime_video``, read and checked, on its way through decode -> scores -> response."""
    video: bytes
    views: str
    topk: int
    sender: object          # the request's InferenceResponseSender (the request itself is released by then)
    received: float         # time.perf_counter() when execute saw it


class CancelCheck:
    """``should_stop`` for a decode: asks the response sender whether the client cancelled, at most every
    ``every`` seconds (each question is a round trip to the server)."""

    def __init__(self, sender, every: float = 0.05):
        self.sender, self.every = sender, every
        self.cancelled, self._last = False, float("-inf")

    def __call__(self) -> bool:
        if not self.cancelled and time.monotonic() - self._last >= self.every:
            self._last = time.monotonic()
            try:
                self.cancelled = bool(self.sender.is_cancelled())
            except Exception:  # noqa: BLE001 - an older python backend without is_cancelled
                self.every = float("inf")
        return self.cancelled


def read_video_settings(model, args: dict, default_decode_threads: int) -> dict[str, str]:
    """What the video and timeline models read from their config alike, set on ``model``: a decode-only
    ``classifier`` (data config, labels, budget), ``clip_model``/``clip_batch`` (the BLS target), ``limits``,
    ``default_topk``, ``decode_threads``, ``admission_timeout``, ``metrics``. Returns the parameters."""
    import torch

    from squeezetime import Classifier, DataConfig

    config = json.loads(args["model_config"])
    params = parameters(config)
    model_dir = Path(args["model_repository"])
    torch.set_num_threads(int(params.get("num_threads", "1") or 1))
    data_config = DataConfig.from_dict(json.loads((model_dir / DATA_CONFIG_FILE).read_text(encoding="utf-8")))
    model.classifier = Classifier(None, data_config, read_labels(model_dir / params.get("labels", LABELS_FILE)),
                                  budget=decode_budget(params))
    model.clip_model = params.get("clip_model", "squeezetime")
    model.clip_batch = max(1, int(params.get("clip_max_batch_size", "8")))
    model.limits = RequestLimits(max_video_bytes=int(params.get("max_video_bytes", DEFAULT_MAX_VIDEO_BYTES)))
    model.default_topk = int(params.get("default_topk", "5"))
    model.decode_threads = max(1, int(params.get("decode_threads", "0") or 0) or default_decode_threads)
    # a request waits for a decode slot at most this long (then UNAVAILABLE): twice the decode budget, plus slack
    model.admission_timeout = 2 * model.classifier.budget.max_seconds + 60.0
    model.metrics = _recorder(args["model_name"])
    return params


class VideoModel:
    """``squeezetime_video``: decodes each video (thread pool), scores its clips in ``squeezetime`` (BLS),
    summarises, answers each request through its response sender as soon as it is done."""

    def initialize(self, args: dict) -> None:
        params = read_video_settings(self, args, default_decode_threads=4)
        self.default_views = params.get("default_views") or self.classifier.data_config.default_views
        self.max_in_flight = max(1, int(params.get("max_in_flight", "0") or 0) or 2 * self.decode_threads)
        self.slots = threading.BoundedSemaphore(self.max_in_flight)
        self.pool = DecodePool(self.decode_threads)
        # The model's own event loop: BLS calls (async_exec runs each in the loop's default executor, blocking for
        # the clip model's answer), responses. One outstanding BLS call per request in flight.
        self.loop = asyncio.new_event_loop()
        self.loop.set_default_executor(ThreadPoolExecutor(self.max_in_flight + 2, thread_name_prefix="squeezetime-bls"))
        self.loop_thread = threading.Thread(target=self.loop.run_forever, name="squeezetime-video-loop", daemon=True)
        self.loop_thread.start()
        warm = self.warm_up() if setting_flag(params.get("warmup"), True) else "off"
        _log("info", f"squeezetime_video: {self.classifier.num_classes} classes, clips to {self.clip_model!r} in "
                     f"batches of <= {self.clip_batch}, videos up to {self.limits.max_video_bytes} bytes, "
                     f"{self.classifier.budget}, {self.decode_threads} decode threads, <= {self.max_in_flight} "
                     f"requests in flight, warm-up {warm}")

    def warm_up(self) -> str:
        """Decode a tiny generated video in every decode thread (codec set-up, resizing kernels, the threads
        themselves) before the model reports ready. Returns what it did, for the log."""
        from ...synthetic.generator import encode_video

        started = time.perf_counter()
        d = self.classifier.data_config
        side = max(v.short_side for v in d.views.values())
        frames = np.zeros((d.num_frames, side, side * 4 // 3 // 2 * 2, 3), np.uint8)
        for t in range(len(frames)):  # moving stripes: a video without motion is refused as a still image
            frames[t, :, t % 8::8] = 255
        video = encode_video(frames, "mp4")
        barrier = threading.Barrier(self.decode_threads)

        def decode(views):
            try:
                barrier.wait(timeout=30)  # one job per thread
            except threading.BrokenBarrierError:
                pass
            return self.classifier.clips(video, views)

        jobs = [self.pool.submit(0, decode, d.default_views) for _ in range(self.decode_threads)]
        for job in jobs:
            job.result(timeout=120)
        asyncio.run_coroutine_threadsafe(asyncio.sleep(0), self.loop).result(timeout=30)
        return f"{time.perf_counter() - started:.2f} s"

    # -- execute: read each request, hand it to the event loop, return ----------------------------------------
    def read(self, request, received: float) -> VideoJob:
        """Validate one request's fields (not its video) -> a VideoJob holding copies of what it needs."""
        data = video_field(request, self.limits)
        views = parse_views(_single(request, "VIEWS"), self.classifier, self.default_views, field="VIEWS")
        topk = parse_topk(_single(request, "TOPK"), self.default_topk, field="TOPK")
        return VideoJob(data, views, topk, request.get_response_sender(), received)

    def execute(self, requests):
        for request in requests:
            received = time.perf_counter()
            self.metrics.request()
            try:
                job = self.read(request, received)
            except Exception as e:  # noqa: BLE001 - whatever a hostile request does, it is still its own input
                self.metrics.stage("preprocess", time.perf_counter() - received)
                if isinstance(e, SqueezeTimeError):
                    self._fail(request.get_response_sender(), e)
                else:
                    self._fail(request.get_response_sender(), e, "invalid_request",
                               f"unreadable request: {type(e).__name__}: {e}")
                self.metrics.stage("total", time.perf_counter() - received)
                continue
            self.metrics.stage("preprocess", time.perf_counter() - received)
            if not self.slots.acquire(timeout=self.admission_timeout):
                self._fail(job.sender, None, "overloaded",
                           f"squeezetime_video: no room after {self.admission_timeout:.0f} s "
                           f"({self.max_in_flight} requests in flight)")
                self.metrics.stage("total", time.perf_counter() - received)
                continue
            try:
                asyncio.run_coroutine_threadsafe(self.serve(job), self.loop)
            except Exception as e:  # noqa: BLE001 - e.g. the loop is gone (unloading): still answer the request
                self.slots.release()
                self._fail(job.sender, e, "internal", f"squeezetime_video is not serving: {type(e).__name__}: {e}")
        return None  # every request is answered through its response sender

    # -- on the model's event loop ------------------------------------------------------------------------------
    async def serve(self, job: VideoJob) -> None:
        """Decode (thread pool), score (BLS), summarise, answer; errors are the request's own answer."""
        try:
            cancelled = CancelCheck(job.sender)
            cost = decode_cost(job.video, self.classifier.data_config.view(job.views))
            clips = await asyncio.wrap_future(self.pool.submit(cost, self.decode, job, cancelled, time.perf_counter()))
            if cancelled():
                raise DecodeCancelled("the request was cancelled before its clips were scored")
            started = time.perf_counter()
            try:
                probs = await self.scores(clips, cancelled)
            finally:
                self.metrics.stage("inference", time.perf_counter() - started)
            started = time.perf_counter()
            response = self.response(self.classifier.summarize(probs, job.topk))
            self.metrics.stage("postprocess", time.perf_counter() - started)
            self.metrics.clips(len(clips))
            self._send(job.sender, response)
        except Exception as e:  # noqa: BLE001 - the request's answer
            self._fail(job.sender, e)
        finally:
            self.metrics.stage("total", time.perf_counter() - job.received)
            self.slots.release()

    def decode(self, job: VideoJob, cancelled: CancelCheck, queued: float) -> np.ndarray:
        """In a decode thread: the job's video -> uint8 clips (V, T, crop, crop, 3)."""
        started = time.perf_counter()
        self.metrics.stage("queue", started - queued)
        try:
            return video_clips(self.classifier, job.video, job.views, self.limits, should_stop=cancelled)
        finally:
            self.metrics.stage("decode", time.perf_counter() - started)

    async def scores(self, clips: np.ndarray, cancelled=lambda: False) -> np.ndarray:
        """(N, T, H, W, 3) clips -> (N, classes) PROBS from the clip model, one chunk of <= clip_max_batch_size
        clips at a time (so a cheap request's clips queue behind one chunk of each request in flight, not behind
        all their clips)."""
        pb = _pb()
        out = []
        for i in range(0, len(clips), self.clip_batch):
            if cancelled():
                raise DecodeCancelled("the request was cancelled while its clips were scored")
            chunk = np.ascontiguousarray(clips[i:i + self.clip_batch])
            request = pb.InferenceRequest(model_name=self.clip_model, requested_output_names=["PROBS"],
                                          inputs=[pb.Tensor("CLIP", chunk)], **cpu_outputs())
            response = await request.async_exec()
            if response.has_error():
                raise RuntimeError(f"{self.clip_model}: {response.error().message()}")
            out.append(pb.get_output_tensor_by_name(response, "PROBS").as_numpy())
        return np.concatenate(out)

    @staticmethod
    def response(top):
        pb = _pb()
        labels = np.array([[label.encode("utf-8") for label, _ in top]], dtype=np.object_)
        scores = np.array([[p for _, p in top]], dtype=np.float32)
        return pb.InferenceResponse(output_tensors=[pb.Tensor("LABELS", labels), pb.Tensor("SCORES", scores)])

    # -- answers ------------------------------------------------------------------------------------------------
    @staticmethod
    def _send(sender, response) -> None:
        sender.send(response, flags=_pb().TRITONSERVER_RESPONSE_COMPLETE_FINAL)

    def _fail(self, sender, error: BaseException | None, reason: str | None = None, message: str | None = None):
        """Answer a request with an error (INVALID_ARG for the client's, CANCELLED, UNAVAILABLE, INTERNAL) and
        count it by reason."""
        reason = reason or m.rejection_reason(error)
        if message is None:
            message = str(error) if isinstance(error, SqueezeTimeError) else \
                f"classification failed: {type(error).__name__}: {error}"
        self.metrics.rejected(reason)
        try:
            self._send(sender, _error(message, ERROR_CODES.get(reason, "INVALID_ARG")))
        except Exception as e:  # noqa: BLE001 - e.g. the response factory is gone (client cancelled)
            _log("verbose", f"squeezetime_video: could not send an error response ({type(e).__name__}: {e})")

    def finalize(self) -> None:
        self.pool.shutdown()
        loop = getattr(self, "loop", None)
        if loop is not None:
            loop.call_soon_threadsafe(loop.stop)
            self.loop_thread.join(timeout=10)


__all__ = ["ClipModel", "DATA_CONFIG_FILE", "DecodePool", "LABELS_FILE", "TritonMetrics", "VideoModel", "cpu_outputs",
           "decode_cost", "input_dims", "instance_device", "parameters", "read_labels"]
