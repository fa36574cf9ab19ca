"""Triton python-backend models: thin adapters between Triton's requests and ``squeezetime.Classifier``.

- ``ClipModel`` (model ``squeezetime``): uint8 clips ``CLIP [B, T, crop, crop, 3]`` -> ``LOGITS``, ``PROBS``
  (``Classifier.infer``).
- ``VideoModel`` (model ``squeezetime_video``): an encoded video -> top-k ``LABELS`` and ``SCORES``, exactly as
  ``Classifier.classify``: it decodes here (``Classifier.clips``), sends the clips to the clip model through BLS
  (``async_exec``), so clips of concurrent requests meet in the clip model's dynamic batcher, and summarises
  (``Classifier.summarize_many``).

Shapes and names come from the model's config; the class names from its ``labels.txt`` and the pipeline from
``data_config.json`` (both written by ``squeezetime triton-repo``). Requests are untrusted: each is validated
on its own by ``squeezetime.serving.requests``; a bad one gets ``INVALID_ARG`` (gRPC INVALID_ARGUMENT) with an
ASCII message while the others of the batch are answered normally. This module runs inside the stub process,
where ``triton_python_backend_utils`` is importable.
"""
from __future__ import annotations

import asyncio
import json
from pathlib import Path

import numpy as np

from ...errors import SqueezeTimeError
from ..requests import (DEFAULT_MAX_VIDEO_BYTES, RequestError, RequestLimits, ascii_message, check_clip_array,
                        decode_budget, parse_topk, parse_views, video_clips)

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


class ClipModel:
    """``squeezetime``: ``Classifier.infer`` on batches of sampled, cropped RGB clips."""

    def initialize(self, args: dict) -> None:
        import squeezetime

        config = json.loads(args["model_config"])
        params = parameters(config)
        version_dir = Path(args["model_repository"]) / args["model_version"]
        threads = int(params.get("num_threads", "0") or 0) or None
        self.classifier = squeezetime.load(str(version_dir / params.get("checkpoint", "model.pth")),
                                           backend=params.get("backend", "auto") or "auto",
                                           dtype=params.get("dtype", "float32") or "float32", threads=threads,
                                           batch_size=max(1, int(config.get("max_batch_size", 8))))
        d = self.classifier.data_config
        dims = input_dims(config, "CLIP")
        if dims != [d.num_frames, d.crop_size, d.crop_size, 3]:
            raise ValueError(f"config CLIP dims {dims} do not match the checkpoint's data config "
                             f"[{d.num_frames}, {d.crop_size}, {d.crop_size}, 3]")
        self.limits = RequestLimits(max_clips=max(1, int(config.get("max_batch_size", 1))))
        _log("info", f"squeezetime: {args['model_name']} loaded: {self.classifier!r}")

    def execute(self, requests):
        pb = _pb()
        arrays, responses = [], [None] * len(requests)
        for i, request in enumerate(requests):
            clip = pb.get_input_tensor_by_name(request, "CLIP")
            try:
                if clip is None:
                    raise RequestError("input CLIP is missing")
                arrays.append((i, check_clip_array(clip.as_numpy(), self.classifier, self.limits)))
            except SqueezeTimeError as e:
                responses[i] = _error(str(e))
        if arrays:
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
                        responses[i] = _error(f"squeezetime failed on this request: {type(e).__name__}: {e}",
                                              "INTERNAL")
        return responses

    @staticmethod
    def _response(logits, probs):
        pb = _pb()
        return pb.InferenceResponse(output_tensors=[
            pb.Tensor("LOGITS", np.ascontiguousarray(logits.numpy(), np.float32)),
            pb.Tensor("PROBS", np.ascontiguousarray(probs.numpy(), np.float32))])

    def finalize(self) -> None:
        self.classifier = None


class VideoModel:
    """``squeezetime_video``: decodes each video, scores its clips in ``squeezetime`` (BLS), summarises."""

    def initialize(self, args: dict) -> None:
        import torch

        from squeezetime import Classifier, DataConfig

        config = json.loads(args["model_config"])
        params = parameters(config)
        model_dir = Path(args["model_repository"])
        torch.set_num_threads(int(params.get("num_threads", "1") or 1))
        data_config = DataConfig.from_dict(json.loads((model_dir / DATA_CONFIG_FILE).read_text(encoding="utf-8")))
        self.classifier = Classifier(None, data_config, read_labels(model_dir / params.get("labels", LABELS_FILE)),
                                     budget=decode_budget(params))
        self.clip_model = params.get("clip_model", "squeezetime")
        self.clip_batch = max(1, int(params.get("clip_max_batch_size", "8")))
        self.limits = RequestLimits(max_video_bytes=int(params.get("max_video_bytes", DEFAULT_MAX_VIDEO_BYTES)))
        self.default_views = params.get("default_views") or data_config.default_views
        self.default_topk = int(params.get("default_topk", "5"))
        _log("info", f"squeezetime_video: {self.classifier.num_classes} classes, clips to {self.clip_model!r} in "
                     f"batches of <= {self.clip_batch}, videos up to {self.limits.max_video_bytes} bytes, "
                     f"{self.classifier.budget}")

    def prepare(self, request) -> tuple[np.ndarray, int]:
        """Validate one request and decode its video -> (uint8 clips (V, T, crop, crop, 3), topk)."""
        video = _single(request, "VIDEO")
        if video is None:
            raise RequestError("input VIDEO is missing")
        if not isinstance(video, (bytes, np.bytes_)):
            raise RequestError(f"VIDEO must be BYTES (an encoded video file), got {type(video).__name__}")
        views = parse_views(_single(request, "VIEWS"), self.classifier, self.default_views, field="VIEWS")
        topk = parse_topk(_single(request, "TOPK"), self.default_topk, field="TOPK")
        return video_clips(self.classifier, bytes(video), views, self.limits), topk

    async def _scores(self, clips: np.ndarray) -> np.ndarray:
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
        pb = _pb()
        responses = [None] * len(requests)
        prepared = []
        for i, request in enumerate(requests):
            try:
                prepared.append((i, *self.prepare(request)))
            except SqueezeTimeError as e:
                responses[i] = _error(str(e))
            except Exception as e:  # noqa: BLE001 - whatever a hostile request does, it is still its own input
                responses[i] = _error(f"unreadable request: {type(e).__name__}: {e}")
        if not prepared:
            return responses
        try:
            probs = await self._scores(np.concatenate([clips for _, clips, _ in prepared]))
        except Exception as e:  # noqa: BLE001
            for i, _, _ in prepared:
                responses[i] = _error(f"classification failed: {e}", "INTERNAL")
            return responses
        tops = self.classifier.summarize_many(probs, [len(c) for _, c, _ in prepared], [k for _, _, k in prepared])
        for (i, _, _), top in zip(prepared, tops):
            labels = np.array([[label.encode("utf-8") for label, _ in top]], dtype=np.object_)
            scores = np.array([[p for _, p in top]], dtype=np.float32)
            responses[i] = pb.InferenceResponse(output_tensors=[pb.Tensor("LABELS", labels),
                                                                pb.Tensor("SCORES", scores)])
        return responses

    def finalize(self) -> None:
        pass


__all__ = ["ClipModel", "DATA_CONFIG_FILE", "LABELS_FILE", "VideoModel", "input_dims", "parameters",
           "read_labels"]
