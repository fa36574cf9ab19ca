"""gRPC client of the SqueezeTime Triton models (``tritonclient``), with timeouts and clear errors.

    client = TritonClient("127.0.0.1:8001")
    client.classify("video.mp4", views="1x1", topk=5)      # [(label, probability), ...] as squeezetime.predict
    client.classify_clips(clips)                            # uint8 (N, 16, 224, 224, 3) -> ClipScores(logits, probs)
    for window in client.timeline("long.mp4", stride=1.0):  # streamed: squeezetime.timeline.Window each
        ...
"""
from __future__ import annotations

import os
import time
import uuid
from typing import NamedTuple

import numpy as np

from ...errors import InputError, SqueezeTimeError, VideoError
from .repository import CLIP_MODEL, TIMELINE_MODEL, VIDEO_MODEL


class TritonUnavailable(SqueezeTimeError, ConnectionError):
    """The server cannot be reached, is not ready, or did not answer in time."""


class TritonRequestError(InputError):
    """The server refused a request (e.g. INVALID_ARGUMENT for a corrupt video); ``status`` is the gRPC code."""

    def __init__(self, message: str, status: str | None = None):
        super().__init__(message)
        self.status = status


class ClipScores(NamedTuple):
    logits: np.ndarray  # (N, classes) float32
    probs: np.ndarray   # (N, classes) float32, softmax per clip


Prediction = list[tuple[str, float]]
_UNAVAILABLE = ("StatusCode.UNAVAILABLE", "StatusCode.DEADLINE_EXCEEDED", "StatusCode.CANCELLED")


class TritonClient:
    """Client of a Triton server that serves ``squeezetime`` and ``squeezetime_video`` (gRPC).

    ``timeout`` (seconds) bounds each request; a server that is down or does not answer in time raises
    ``TritonUnavailable``, a refused request ``TritonRequestError`` (``.status`` = "StatusCode.INVALID_ARGUMENT"...).
    """

    def __init__(self, url: str = "127.0.0.1:8001", *, timeout: float = 60.0, clip_model: str = CLIP_MODEL,
                 video_model: str = VIDEO_MODEL, timeline_model: str = TIMELINE_MODEL, verbose: bool = False):
        try:
            import tritonclient.grpc as grpcclient
        except ImportError as e:
            raise SqueezeTimeError("the Triton client needs tritonclient: pip install 'squeezetime[serve]'") from e
        self._grpc = grpcclient
        self.url = url
        self.timeout = timeout
        self.clip_model = clip_model
        self.video_model = video_model
        self.timeline_model = timeline_model
        self.client = grpcclient.InferenceServerClient(url, verbose=verbose)
        self._max_batch: int | None = None

    # -- errors -------------------------------------------------------------------------------------------------
    def _call(self, what: str, fn, *args, **kwargs):
        from tritonclient.utils import InferenceServerException

        try:
            return fn(*args, **kwargs)
        except InferenceServerException as e:
            status = e.status() or ""
            if status in _UNAVAILABLE or "failed to connect" in (e.message() or "").lower():
                raise TritonUnavailable(f"Triton at {self.url} did not answer {what} ({status or 'no status'}: "
                                        f"{e.message()}); is `squeezetime serve` running there?") from None
            raise TritonRequestError(f"{what}: {e.message()}", status or None) from None

    # -- health -------------------------------------------------------------------------------------------------
    def is_ready(self) -> bool:
        """True when the server and both models are ready; False (never an exception) otherwise."""
        try:
            return bool(self.client.is_server_ready(client_timeout=self.timeout)
                        and self.client.is_model_ready(self.clip_model, client_timeout=self.timeout)
                        and self.client.is_model_ready(self.video_model, client_timeout=self.timeout))
        except Exception:  # noqa: BLE001
            return False

    def check(self) -> None:
        """Raise ``TritonUnavailable`` unless the server is live and the models are ready."""
        self._call("a readiness check", self.client.is_server_live, client_timeout=self.timeout)
        if not self.is_ready():
            raise TritonUnavailable(f"Triton at {self.url} is up but '{self.clip_model}'/'{self.video_model}' "
                                    "are not ready")

    def max_batch_size(self) -> int:
        if self._max_batch is None:
            config = self._call("the model config", self.client.get_model_config, self.clip_model, as_json=True,
                                client_timeout=self.timeout)
            self._max_batch = int(config["config"].get("max_batch_size", 0)) or 1
        return self._max_batch

    # -- clips --------------------------------------------------------------------------------------------------
    def _clip_input(self, chunk: np.ndarray, shm=None):
        inp = self._grpc.InferInput("CLIP", list(chunk.shape), "UINT8")
        if shm is None:
            inp.set_data_from_numpy(chunk)
        else:
            inp.set_shared_memory(shm, chunk.nbytes)
        return inp

    def classify_clips(self, clips, *, shared_memory: bool = False) -> ClipScores:
        """uint8 clips (N, 16, 224, 224, 3) or one (16, 224, 224, 3) -> ``ClipScores(logits, probs)`` (N, classes).

        ``shared_memory=True`` passes the clips through a system shared-memory region (same host only).
        """
        array = np.asarray(clips)
        if array.dtype != np.uint8:
            raise InputError(f"clips must be uint8 RGB frames, got {array.dtype}")
        if array.ndim == 4:
            array = array[None]
        if array.ndim != 5 or array.shape[-1] != 3 or array.shape[0] == 0:
            raise InputError(f"clips must be (N, T, H, W, 3) RGB with N >= 1, got shape {tuple(np.shape(clips))}")
        array = np.ascontiguousarray(array)
        step = self.max_batch_size()
        logits, probs = [], []
        for start in range(0, len(array), step):
            chunk = array[start:start + step]
            result = self._infer_clips(chunk, shared_memory)
            logits.append(result.logits)
            probs.append(result.probs)
        return ClipScores(np.concatenate(logits), np.concatenate(probs))

    def _infer_clips(self, chunk: np.ndarray, shared_memory: bool) -> ClipScores:
        outputs = [self._grpc.InferRequestedOutput("LOGITS"), self._grpc.InferRequestedOutput("PROBS")]
        if not shared_memory:
            result = self._call(f"'{self.clip_model}'", self.client.infer, self.clip_model,
                                [self._clip_input(chunk)], outputs=outputs, client_timeout=self.timeout)
            return ClipScores(result.as_numpy("LOGITS"), result.as_numpy("PROBS"))
        import tritonclient.utils.shared_memory as shm

        name = f"squeezetime_{os.getpid()}_{uuid.uuid4().hex[:12]}"
        handle = shm.create_shared_memory_region(name, "/" + name, chunk.nbytes)
        try:
            shm.set_shared_memory_region(handle, [chunk])
            self._call("shared-memory registration", self.client.register_system_shared_memory, name, "/" + name,
                       chunk.nbytes, client_timeout=self.timeout)
            try:
                result = self._call(f"'{self.clip_model}'", self.client.infer, self.clip_model,
                                    [self._clip_input(chunk, shm=name)], outputs=outputs,
                                    client_timeout=self.timeout)
                return ClipScores(result.as_numpy("LOGITS"), result.as_numpy("PROBS"))
            finally:
                self._unregister(name)
        finally:
            shm.destroy_shared_memory_region(handle)

    def _unregister(self, name: str) -> None:
        """Unregister a region; the server may hold it a moment after answering (request release is async)."""
        from tritonclient.utils import InferenceServerException

        deadline = time.monotonic() + min(self.timeout, 10.0)
        while True:
            try:
                self.client.unregister_system_shared_memory(name, client_timeout=self.timeout)
                return
            except InferenceServerException:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.02)

    # -- videos -------------------------------------------------------------------------------------------------
    def video_inputs(self, video, views: str | None = "1x1", topk: int | None = 5) -> list:
        """The ``squeezetime_video`` request inputs for ``video`` (a path or the encoded bytes)."""
        data = _read_video(video)
        inputs = [self._grpc.InferInput("VIDEO", [1, 1], "BYTES")]
        inputs[0].set_data_from_numpy(np.array([[data]], dtype=np.object_))
        if views is not None:
            inputs.append(self._grpc.InferInput("VIEWS", [1, 1], "BYTES"))
            inputs[-1].set_data_from_numpy(np.array([[views.encode("utf-8")]], dtype=np.object_))
        if topk is not None:
            inputs.append(self._grpc.InferInput("TOPK", [1, 1], "INT32"))
            inputs[-1].set_data_from_numpy(np.array([[topk]], dtype=np.int32))
        return inputs

    @staticmethod
    def parse_video_result(result) -> Prediction:
        labels = result.as_numpy("LABELS").reshape(-1)
        scores = result.as_numpy("SCORES").reshape(-1)
        return [(bytes(label).decode("utf-8"), float(score)) for label, score in zip(labels, scores)]

    def classify(self, video, views: str = "1x1", topk: int = 5) -> Prediction:
        """A video file (path or bytes) -> [(label, probability), ...] best first, as ``squeezetime.predict``."""
        inputs = self.video_inputs(video, views, topk)
        name = video if isinstance(video, (str, os.PathLike)) else "<bytes>"
        result = self._call(f"{os.fspath(name)}", self.client.infer, self.video_model, inputs,
                            outputs=[self._grpc.InferRequestedOutput("LABELS"),
                                     self._grpc.InferRequestedOutput("SCORES")], client_timeout=self.timeout)
        return self.parse_video_result(result)

    # -- timelines (gRPC streaming) ---------------------------------------------------------------------------
    def timeline(self, video, stride: float = 1.0, topk: int = 5):
        """A video file (path or bytes) -> its windows, each yielded as soon as the server streams it:
        ``squeezetime.timeline.Window(start, end, top, probs)`` (``probs``: the top-k scores only). Leaving the loop
        early (or closing the generator) cancels the request: the server stops decoding and scoring it."""
        import queue

        from ...timeline import Window

        inputs = self.video_inputs(video, views=None, topk=topk)
        inputs.append(self._grpc.InferInput("STRIDE", [1, 1], "FP32"))
        inputs[-1].set_data_from_numpy(np.array([[stride]], dtype=np.float32))
        name = os.fspath(video) if isinstance(video, (str, os.PathLike)) else "<bytes>"
        answers: queue.Queue = queue.Queue()
        client = self._grpc.InferenceServerClient(self.url)  # one stream per client object: a private one
        finished = False
        try:
            client.start_stream(callback=lambda result, error: answers.put((result, error)))
            self._call(name, client.async_stream_infer, self.timeline_model, inputs,
                       request_id=uuid.uuid4().hex, enable_empty_final_response=True)
            while True:
                try:
                    result, error = answers.get(timeout=self.timeout)
                except queue.Empty:
                    raise TritonUnavailable(f"Triton at {self.url}: no window of {name} within {self.timeout:g} s")
                if error is not None:
                    self._call(name, _raise, error)
                response = result.get_response()
                if response.outputs:
                    labels = [bytes(x).decode("utf-8") for x in result.as_numpy("LABELS").reshape(-1)]
                    scores = result.as_numpy("SCORES").reshape(-1).astype(np.float32)
                    yield Window(float(result.as_numpy("START").reshape(-1)[0]),
                                 float(result.as_numpy("END").reshape(-1)[0]),
                                 [(label, float(p)) for label, p in zip(labels, scores)], scores)
                if response.parameters.get("triton_final_response") and \
                        response.parameters["triton_final_response"].bool_param:
                    finished = True
                    return
        finally:
            try:
                client.stop_stream(cancel_requests=not finished)
            finally:
                client.close()

    # -- statistics ---------------------------------------------------------------------------------------------
    def batch_sizes(self, model: str | None = None) -> dict[int, int]:
        """{batch size: executions} from the server's statistics (dynamic batching at work when sizes > 1)."""
        stats = self._call("statistics", self.client.get_inference_statistics, model or self.clip_model,
                           as_json=True, client_timeout=self.timeout)
        sizes: dict[int, int] = {}
        for model_stats in stats.get("model_stats", []):
            for entry in model_stats.get("batch_stats", []):
                sizes[int(entry["batch_size"])] = sizes.get(int(entry["batch_size"]), 0) + \
                    int(entry["compute_infer"]["count"])
        return sizes

    def close(self) -> None:
        self.client.close()

    def __enter__(self) -> "TritonClient":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def _raise(error: Exception):
    raise error


def _read_video(video) -> bytes:
    if isinstance(video, (bytes, bytearray, memoryview)):
        return bytes(video)
    path = os.fspath(video)
    try:
        with open(path, "rb") as f:
            return f.read()
    except OSError as e:
        raise VideoError(f"{path}: {e.strerror}") from None


__all__ = ["ClipScores", "TritonClient", "TritonRequestError", "TritonUnavailable"]
