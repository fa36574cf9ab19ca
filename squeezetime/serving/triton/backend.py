"""Triton python-backend models. The repository's ``model.py`` files import these classes as ``TritonPythonModel``.

- ``ClipModel`` (model ``squeezetime``): uint8 clips ``CLIP [B, 16, 224, 224, 3]`` -> ``LOGITS``, ``PROBS``.
- ``VideoModel`` (model ``squeezetime_video``): an encoded video -> top-k ``LABELS`` and ``SCORES``, exactly as
  ``squeezetime.predict``; it decodes and samples here and sends the clips to the clip model through BLS
  (``async_exec``), so clips of concurrent requests meet in the clip model's dynamic batcher.

Requests are untrusted: each request of a batch is validated on its own, and a bad one gets an
``INVALID_ARG`` error (gRPC INVALID_ARGUMENT) while the others of the batch are answered normally.
This module runs inside the stub process, where ``triton_python_backend_utils`` is importable.
"""
from __future__ import annotations

import asyncio
import json
import os
from pathlib import Path

import numpy as np

DTYPES = ("float32", "bfloat16", "float16")
DEFAULT_MAX_VIDEO_BYTES = 64 * 1024 * 1024


def _pb():
    import triton_python_backend_utils as pb_utils  # only inside tritonserver's python backend stub
    return pb_utils


def parameters(model_config: dict) -> dict[str, str]:
    return {k: v.get("string_value", "") for k, v in model_config.get("parameters", {}).items()}


def read_labels(path: Path) -> list[str]:
    return [line.rstrip("\n") for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def _invalid(message: str):
    pb = _pb()
    return pb.InferenceResponse(error=pb.TritonError(message, pb.TritonError.INVALID_ARG))


def _internal(message: str):
    pb = _pb()
    return pb.InferenceResponse(error=pb.TritonError(message, pb.TritonError.INTERNAL))


def _log(level: str, message: str) -> None:
    try:
        logger = _pb().Logger
        getattr(logger, f"log_{level}")(message)
    except Exception:  # noqa: BLE001 - logging must never fail a request
        print(message, flush=True)


def find_optimize():
    """``squeezetime.optimize(model, dtype=...)`` when this version of the package has it, else None."""
    import importlib

    try:
        found = importlib.import_module("squeezetime.optimize")
    except ImportError:
        return None
    found = getattr(found, "optimize", found)
    return found if callable(found) else None


class ClipModel:
    """``squeezetime``: runs SqueezeTime on batches of sampled, cropped RGB clips."""

    def initialize(self, args: dict) -> None:
        import torch

        import squeezetime

        config = json.loads(args["model_config"])
        params = parameters(config)
        version_dir = Path(args["model_repository"]) / args["model_version"]
        threads = int(params.get("num_threads", "0") or 0) or (os.cpu_count() or 1)
        torch.set_num_threads(threads)
        self.dtype_name = params.get("dtype", "float32") or "float32"
        if self.dtype_name not in DTYPES:
            raise ValueError(f"parameter dtype={self.dtype_name!r}; choose one of {DTYPES}")
        self.dtype = getattr(torch, self.dtype_name)
        model = squeezetime.load_checkpoint(str(version_dir / params.get("checkpoint", "model.pth")))
        self.mean = model.config.get("mean", squeezetime.MEAN)
        self.std = model.config.get("std", squeezetime.STD)
        self.num_frames = model.num_frames
        n_classes = len(model.class_names or [])
        self.path, self.input_dtype = "plain", self.dtype
        optimize = find_optimize() if params.get("optimize", "auto") != "off" else None
        if optimize is not None:
            try:
                model = optimize(model.eval(), dtype=self.dtype)  # takes float32 clips, returns float32 logits
                self.path, self.input_dtype = "optimized", torch.float32
            except Exception as e:  # noqa: BLE001 - the plain model is always there
                _log("warn", f"squeezetime.optimize failed ({type(e).__name__}: {e}); serving the plain model")
        if self.path == "plain":
            model = model.to(self.dtype).eval()
        self.model = model
        _log("info", f"squeezetime: {args['model_name']} loaded ({self.path}, {self.dtype_name}, {threads} threads, "
                     f"{n_classes} classes)")

    def forward(self, clips: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        import torch

        import squeezetime

        with torch.inference_mode():
            x = squeezetime.normalize_clip(torch.from_numpy(clips), self.mean, self.std).to(self.input_dtype)
            logits = self.model(x).float()
            return logits.numpy(), logits.softmax(dim=1).numpy()

    def execute(self, requests):
        pb = _pb()
        arrays, responses = [], [None] * len(requests)
        for i, request in enumerate(requests):
            clip = pb.get_input_tensor_by_name(request, "CLIP")
            array = clip.as_numpy() if clip is not None else None
            if array is None or array.dtype != np.uint8 or array.ndim != 5 or array.shape[1] != self.num_frames \
                    or array.shape[-1] != 3:  # the server checks config shapes; this guards anything else
                responses[i] = _invalid(f"CLIP must be uint8 [batch, {self.num_frames}, 224, 224, 3], got "
                                        f"{None if array is None else (array.dtype, array.shape)}")
            else:
                arrays.append((i, array))
        if arrays:
            try:
                logits, probs = self.forward(np.concatenate([a for _, a in arrays]))
                start = 0
                for i, array in arrays:
                    n = array.shape[0]
                    responses[i] = self._response(logits[start:start + n], probs[start:start + n])
                    start += n
            except Exception:  # noqa: BLE001 - find the request that broke the batch; answer the others
                for i, array in arrays:
                    try:
                        responses[i] = self._response(*self.forward(array))
                    except Exception as e:  # noqa: BLE001
                        responses[i] = _internal(f"squeezetime failed on this request: {type(e).__name__}: {e}")
        return responses

    @staticmethod
    def _response(logits: np.ndarray, probs: np.ndarray):
        pb = _pb()
        return pb.InferenceResponse(output_tensors=[pb.Tensor("LOGITS", np.ascontiguousarray(logits, np.float32)),
                                                    pb.Tensor("PROBS", np.ascontiguousarray(probs, np.float32))])

    def finalize(self) -> None:
        self.model = None


class VideoModel:
    """``squeezetime_video``: decodes and samples each video, classifies its clips through ``squeezetime`` (BLS)."""

    def initialize(self, args: dict) -> None:
        import torch

        config = json.loads(args["model_config"])
        params = parameters(config)
        model_dir = Path(args["model_repository"])
        torch.set_num_threads(int(params.get("num_threads", "1") or 1))
        self.clip_model = params.get("clip_model", "squeezetime")
        self.clip_batch = max(1, int(params.get("clip_max_batch_size", "8")))
        self.num_frames = int(params.get("num_frames", "16"))
        self.max_video_bytes = int(params.get("max_video_bytes", str(DEFAULT_MAX_VIDEO_BYTES)))
        self.default_views = params.get("default_views", "1x1") or "1x1"
        self.default_topk = int(params.get("default_topk", "5"))
        self.labels = read_labels(model_dir / params.get("labels", "labels.txt"))
        _log("info", f"squeezetime_video: {len(self.labels)} classes, clips to {self.clip_model!r} in batches of "
                     f"<= {self.clip_batch}, videos up to {self.max_video_bytes} bytes")

    # -- per request ----------------------------------------------------------------------------------------
    def _scalar(self, request, name: str):
        tensor = _pb().get_input_tensor_by_name(request, name)
        if tensor is None:
            return None
        array = tensor.as_numpy()
        if array.size != 1:
            raise ValueError(f"{name} must hold exactly one element per request, got shape {list(array.shape)}")
        return array.reshape(-1)[0]

    def prepare(self, request) -> tuple[np.ndarray, int]:
        """Validate one request and decode its video -> (uint8 clips (V, T, 224, 224, 3), topk).

        Raises ``ValueError`` (``squeezetime``'s input errors are ValueErrors) with a message for the client.
        """
        from squeezetime.video import VIEWS, sample_clips

        video = self._scalar(request, "VIDEO")
        if video is None:
            raise ValueError("input VIDEO is missing")
        if not isinstance(video, (bytes, np.bytes_)):
            raise ValueError(f"VIDEO must be BYTES (an encoded video file), got {type(video).__name__}")
        video = bytes(video)
        if len(video) > self.max_video_bytes:
            raise ValueError(f"video is {len(video)} bytes, over this server's limit of {self.max_video_bytes} "
                             "bytes (model parameter max_video_bytes)")
        views = self._scalar(request, "VIEWS")
        if views is None:
            views = self.default_views
        else:
            try:
                views = bytes(views).decode("utf-8") if isinstance(views, (bytes, np.bytes_)) else str(views)
            except UnicodeDecodeError:
                raise ValueError("VIEWS is not UTF-8 text") from None
        if views not in VIEWS:
            raise ValueError(f"unknown VIEWS {views[:40]!r}; choose one of {sorted(VIEWS)}")
        topk = self._scalar(request, "TOPK")
        topk = self.default_topk if topk is None else int(topk)
        if topk < 1:
            raise ValueError(f"TOPK must be >= 1, got {topk}")
        clips = sample_clips(video, views, self.num_frames)
        return clips, topk

    async def _classify(self, clips: np.ndarray) -> np.ndarray:
        """(N, T, H, W, 3) clips -> (N, classes) PROBS from the clip model, chunks sent concurrently."""
        pb = _pb()
        chunks = [clips[i:i + self.clip_batch] for i in range(0, len(clips), self.clip_batch)]
        requests = [pb.InferenceRequest(model_name=self.clip_model, requested_output_names=["PROBS"],
                                        inputs=[pb.Tensor("CLIP", np.ascontiguousarray(chunk))]) for chunk in chunks]
        responses = await asyncio.gather(*(r.async_exec() for r in requests))
        out = []
        for response in responses:
            if response.has_error():
                raise RuntimeError(f"{self.clip_model}: {response.error().message()}")
            out.append(pb.get_output_tensor_by_name(response, "PROBS").as_numpy())
        return np.concatenate(out)

    async def execute(self, requests):
        import torch

        from squeezetime.predict import top_k

        pb = _pb()
        responses = [None] * len(requests)
        prepared = []
        for i, request in enumerate(requests):
            try:
                clips, topk = self.prepare(request)
                prepared.append((i, clips, topk))
            except ValueError as e:  # VideoError / InputError are ValueErrors
                responses[i] = _invalid(str(e))
            except Exception as e:  # noqa: BLE001 - a decoder crash on a hostile file is still the client's input
                responses[i] = _invalid(f"cannot read this video: {type(e).__name__}: {e}")
        if prepared:
            try:
                probs = await self._classify(np.concatenate([clips for _, clips, _ in prepared]))
            except Exception as e:  # noqa: BLE001
                for i, _, _ in prepared:
                    responses[i] = _internal(f"classification failed: {e}")
                return responses
            start = 0
            for i, clips, topk in prepared:
                mean = torch.from_numpy(probs[start:start + len(clips)]).mean(0)
                start += len(clips)
                top = top_k(mean, self.labels, topk)
                labels = np.array([[label.encode("utf-8") for label, _ in top]], dtype=np.object_)
                scores = np.array([[p for _, p in top]], dtype=np.float32)
                responses[i] = pb.InferenceResponse(output_tensors=[pb.Tensor("LABELS", labels),
                                                                    pb.Tensor("SCORES", scores)])
        return responses

    def finalize(self) -> None:
        pass


__all__ = ["ClipModel", "DEFAULT_MAX_VIDEO_BYTES", "DTYPES", "VideoModel", "parameters", "read_labels"]
