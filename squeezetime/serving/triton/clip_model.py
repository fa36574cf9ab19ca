"""Triton python-backend model ``squeezetime``: uint8 clips ``CLIP [B, T, crop, crop, 3]`` -> ``LOGITS``,
``PROBS`` (``Classifier.infer``), batched by Triton's dynamic batcher.

Shapes come from the model's config, the network from the checkpoint in its version directory. Each request of a
batch is checked on its own (``squeezetime.serving.requests``): a bad one gets ``INVALID_ARG`` with an ASCII message
while the others are answered normally; a batch that fails is retried request by request, so one request cannot
fail the others.
"""
from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np

from ...errors import SqueezeTimeError, refusal_of
from ..devices import warm_up_graphs
from ..requests import RequestError, RequestLimits, check_clip_array
from .python_backend import error_response, input_dims, instance_device, log, metrics_recorder, parameters, pb_utils


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
        self.metrics = metrics_recorder(args["model_name"])
        graphs = warm_up_graphs(self.classifier, max_batch)  # batches of <= max_batch meet these buckets only
        log("info", f"squeezetime: {args['model_name']} loaded on {self.device}: {self.classifier!r}"
                    + (f", CUDA graphs captured for batches {list(graphs)}" if graphs else ""))

    def execute(self, requests):
        started = time.perf_counter()
        self.metrics.request(len(requests))
        responses = [None] * len(requests)
        arrays = []
        for i, request in enumerate(requests):
            try:
                arrays.append((i, self.read(request)))
            except SqueezeTimeError as e:
                responses[i] = self.refuse(e)
        self.metrics.stage("preprocess", time.perf_counter() - started)
        if arrays:
            with self.metrics.timed("inference"):
                self.score(arrays, responses)
            self.metrics.clips(sum(len(a) for _, a in arrays))
        self.metrics.stage("total", time.perf_counter() - started)
        return responses

    def read(self, request) -> np.ndarray:
        clip = pb_utils().get_input_tensor_by_name(request, "CLIP")
        if clip is None:
            raise RequestError("input CLIP is missing")
        return check_clip_array(clip.as_numpy(), self.classifier, self.limits)

    def score(self, arrays: list[tuple[int, np.ndarray]], responses: list) -> None:
        """All good requests' clips in one ``infer``; when that fails, each request on its own, so the one that
        broke the batch gets the error and the others their scores."""
        try:
            scores = self.classifier.infer(np.concatenate([a for _, a in arrays]))
            sizes = [len(a) for _, a in arrays]
            for (i, _), logits, probs in zip(arrays, scores.logits.split(sizes), scores.probs.split(sizes)):
                responses[i] = self.response(logits, probs)
        except Exception:  # noqa: BLE001 - find the request that broke the batch; answer the others
            for i, array in arrays:
                try:
                    responses[i] = self.response(*self.classifier.infer(array))
                except Exception as e:  # noqa: BLE001
                    responses[i] = self.refuse(e, f"squeezetime failed on this request: {type(e).__name__}: {e}")

    def refuse(self, error: BaseException, message: str | None = None):
        """The error response for ``error``, counted by its refusal reason."""
        refusal = refusal_of(error)
        self.metrics.rejected(refusal)
        return error_response(message or str(error), refusal)

    @staticmethod
    def response(logits, probs):
        pb = pb_utils()
        return pb.InferenceResponse(output_tensors=[
            pb.Tensor("LOGITS", np.ascontiguousarray(logits.numpy(), np.float32)),
            pb.Tensor("PROBS", np.ascontiguousarray(probs.numpy(), np.float32))])

    def finalize(self) -> None:
        self.classifier = None


__all__ = ["ClipModel"]
