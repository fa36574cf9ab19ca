"""The one inference pipeline: video -> clips -> tensor -> backend -> labels.

    import squeezetime

    classifier = squeezetime.load("squeezetime_k400.pth")           # or a model, or "demo"
    classifier.classify("video.mp4", views="10x3", topk=5)          # [(label, probability), ...]
    classifier.classify_many(["a.mp4", "b.webm"])                   # clips of several videos share batches

Every transport (``squeezetime.predict``, the CLI, Triton's models, the TorchServe handler, the benchmarks)
only translates its requests to these calls: decoding, sampling, batching, averaging over views and top-k
(``squeezetime.prediction``) live here once, so the same video gives the same numbers on every path.
"""
from __future__ import annotations

from collections import deque

import os
from contextlib import nullcontext
from typing import Callable, Iterable, NamedTuple, Sequence

import numpy as np
import torch
from torch import Tensor

from .backends import Backend, BackendError, create_backend
from .backends.int8 import is_int8_artifact
from .data_config import DataConfig
from .errors import InputError, SqueezeTimeError
from .prediction import Prediction, check_topk, top_k
from .preprocess import as_uint8_clips
from .timeline import Timeline
from .video import DEFAULT_BUDGET, DecodeBudget, VideoSource, sample_clips
from .video.decode import stop_when

DEMO = "demo"


class ClipScores(NamedTuple):
    logits: Tensor  # (N, classes) float32
    probs: Tensor   # (N, classes) float32, softmax per clip


def label_names(model) -> list[str]:
    """The model's class names, or ``class_<i>`` when it carries none."""
    names = getattr(model, "class_names", None)
    return list(names) if names else [f"class_{i}" for i in range(model.num_classes)]


def is_clips(video) -> bool:
    """Decoded clips (an array or tensor) rather than an encoded video (path or bytes)."""
    return isinstance(video, (np.ndarray, Tensor))


class Classifier:
    """A SqueezeTime network (or engine) with its ``DataConfig`` and class names; see the module docstring.

    ``backend`` may be None for a classifier that only decodes and summarises (Triton's video model, whose
    network runs in another model); ``scores`` then raises.
    """

    def __init__(self, backend: Backend | None, data_config: DataConfig, class_names: Sequence[str], *,
                 batch_size: int = 8, budget: DecodeBudget = DEFAULT_BUDGET, model=None):
        if batch_size < 1:
            raise InputError(f"batch_size must be >= 1, got {batch_size}")
        self.backend, self.data_config, self.class_names = backend, data_config, list(class_names)
        self.batch_size, self.budget, self.model = batch_size, budget, model

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    def __repr__(self) -> str:
        d = self.data_config
        return (f"Classifier({self.backend!r}, {self.num_classes} classes, {d.num_frames}x{d.frame_interval} "
                f"frames, crop {d.crop_size}, batch {self.batch_size})")

    # -- video -> clips ----------------------------------------------------------------------------------------
    def clips(self, video: VideoSource, views: str | None = None, *,
              should_stop: Callable[[], bool] | None = None) -> np.ndarray:
        """Encoded video (path or bytes) -> uint8 clips (V, T, crop, crop, 3) of the named views, decoded within
        ``self.budget``. ``should_stop``: asked every few frames; True stops the decode (``DecodeCancelled``);
        None keeps the check of an enclosing ``squeezetime.video.decode.stop_when``, if any."""
        d = self.data_config
        with stop_when(should_stop) if should_stop is not None else nullcontext():
            return sample_clips(video, d.view(views), d.num_frames, d.frame_interval, self.budget)

    def check_clips(self, clips) -> Tensor:
        """uint8 (N, T, crop, crop, 3) or (T, crop, crop, 3) as this model needs them, else ``InputError``."""
        d = self.data_config
        return as_uint8_clips(clips, num_frames=d.num_frames, size=(d.crop_size, d.crop_size))

    def as_clips(self, video_or_clips, views: str | None = None) -> Tensor:
        if is_clips(video_or_clips):
            return self.check_clips(video_or_clips)
        return torch.from_numpy(self.clips(video_or_clips, views))

    # -- clips -> scores ---------------------------------------------------------------------------------------
    def infer(self, clips) -> ClipScores:
        """uint8 clips -> per-clip logits and probabilities, ``batch_size`` clips per backend call."""
        if self.backend is None:
            raise BackendError("this classifier has no backend (it only decodes and summarises)")
        clips = self.check_clips(clips)
        batches = [clips[i:i + self.batch_size] for i in range(0, clips.shape[0], self.batch_size)]
        if getattr(self.backend, "submit", None) is not None:
            logits = torch.cat(list(_pipelined(self.backend.submit, batches)))
        else:
            logits = torch.cat([self.backend.logits(batch) for batch in batches])
        return ClipScores(logits, logits.softmax(dim=1))

    def scores(self, clips) -> Tensor:
        """uint8 clips (N, T, H, W, 3) -> per-clip probabilities (N, classes)."""
        return self.infer(clips).probs

    # -- scores -> labels --------------------------------------------------------------------------------------
    def summarize(self, probs, topk: int = 5) -> Prediction:
        """Per-clip probabilities of one video (its views) -> top-k of their mean (mmaction2 'prob' averaging)."""
        probs = torch.as_tensor(probs)
        if probs.dim() != 2 or probs.shape[1] != self.num_classes or probs.shape[0] == 0:
            raise InputError(f"expected (clips, {self.num_classes}) probabilities, got {tuple(probs.shape)}")
        return top_k(probs.float().mean(0), self.class_names, topk)

    def summarize_many(self, probs, counts: Sequence[int], topks: Sequence[int]) -> list[Prediction]:
        """Probabilities of the concatenated clips of several videos (``counts`` clips each) -> one top-k each."""
        probs = torch.as_tensor(probs)
        if sum(counts) != probs.shape[0]:
            raise InputError(f"{probs.shape[0]} clip scores for {sum(counts)} clips")
        parts = torch.split(probs, list(counts))
        return [self.summarize(p, k) for p, k in zip(parts, topks)]

    # -- the whole pipeline ------------------------------------------------------------------------------------
    def classify(self, video_or_clips, views: str | None = None, topk: int = 5) -> Prediction:
        """A video (path or bytes) or its uint8 clips -> [(label, probability), ...], best first."""
        check_topk(topk)  # before any decoding
        return self.summarize(self.scores(self.as_clips(video_or_clips, views)), topk)

    def classify_many(self, videos: Iterable, views: str | None = None, topk: int = 5, *,
                      errors: str = "raise", max_clips: int | None = None) -> list[Prediction | SqueezeTimeError]:
        """Several videos (or clip arrays), their clips batched together into backend calls.

        ``errors="return"`` puts a video's ``SqueezeTimeError`` in its place in the result instead of raising.
        Videos are decoded in groups of at most ``max_clips`` clips (default 4 batches) to bound memory.
        """
        if errors not in ("raise", "return"):
            raise InputError("errors must be 'raise' or 'return'")
        check_topk(topk)
        limit = max_clips or 4 * self.batch_size
        results: list = []
        group: list[tuple[int, Tensor]] = []

        def flush() -> None:
            if group:
                probs = self.scores(torch.cat([c for _, c in group]))
                for (i, _), top in zip(group, self.summarize_many(probs, [len(c) for _, c in group],
                                                                  [topk] * len(group))):
                    results[i] = top
                group.clear()

        for video in videos:
            results.append(None)
            try:
                clips = self.as_clips(video, views)
            except SqueezeTimeError as e:
                if errors == "raise":
                    raise
                results[-1] = e
                continue
            group.append((len(results) - 1, clips))
            if sum(len(c) for _, c in group) >= limit:
                flush()
        flush()
        return results

    # -- long videos -------------------------------------------------------------------------------------------
    def timeline(self, video: VideoSource, stride: float = 1.0, topk: int = 5, batch_size: int | None = None, *,
                 should_stop: Callable[[], bool] | None = None):
        """Windows every ``stride`` seconds (one clip of the model's span each, centre crop), yielded as soon as
        each is decoded and scored: a ``squeezetime.timeline.Timeline`` of ``Window(start, end, top, probs)``;
        ``squeezetime.timeline.segments`` merges them. One sequential decode, memory independent of the length."""
        return Timeline(video, self.data_config, self.class_names, lambda clips: self.scores(clips).numpy(),
                        stride=stride, topk=topk, batch_size=batch_size or self.batch_size, budget=self.budget,
                        should_stop=should_stop)


def _pipelined(submit, batches, in_flight: int = 2):
    """Each batch's logits, with up to ``in_flight`` batches queued on the device (GPU backends): the next batch's
    copy to the device overlaps this one's compute, and no more than that is staged in pinned memory."""
    pending: deque = deque()
    for batch in batches:
        pending.append(submit(batch))
        if len(pending) > in_flight:
            yield pending.popleft().result()
    while pending:
        yield pending.popleft().result()


def load(source, *, backend: str = "auto", dtype=None, device=None, threads: int | None = None,
         batch_size: int = 8, arch: str | None = None, class_names: Sequence[str] | None = None,
         budget: DecodeBudget = DEFAULT_BUDGET) -> Classifier:
    """A ready ``Classifier`` for ``source``: a checkpoint path (official or ours), a ``SqueezeTime`` model,
    ``"demo"`` (the embedded demo model), or an int8 artifact of ``squeezetime quantize`` (recognised by its
    content; served by the ``int8`` backend with the class names and DataConfig it carries).

    backend: "auto" (the measured order of backends.auto; on a GPU optimized), "eager", "optimized",
        "onnxruntime", "openvino" or "int8".
    dtype: None (float32; float16 for optimized/auto on a GPU), float32, bfloat16 (CPU) or float16 (CUDA): the
        compute precision; logits are float32.
    threads: ``torch.set_num_threads`` (process-wide). class_names: overrides the model's own.
    budget: the decoding limits per video (pixels per frame, frames, seconds, still images).
    """
    from .models.checkpoint import load_checkpoint
    from .models.squeezetime import SqueezeTime

    if threads is not None:
        if threads < 1:
            raise InputError(f"threads must be >= 1, got {threads}")
        torch.set_num_threads(threads)
    if isinstance(source, (str, os.PathLike, bytes)) and is_int8_artifact(source):
        return _load_int8(source, backend, dtype, device, batch_size, class_names, budget)
    if isinstance(source, SqueezeTime):
        model = source
    elif isinstance(source, str) and source == DEMO:
        from .synthetic.demo import demo_model
        model = demo_model()
    elif isinstance(source, (str, os.PathLike, bytes)):
        model = load_checkpoint(source, arch=arch)
    else:
        raise InputError(f"load() takes a checkpoint path, a SqueezeTime model or 'demo', got "
                         f"{type(source).__name__}")
    if model.cls_head is None:
        raise InputError("this model has no classification head (features only); it cannot classify")
    names = list(class_names) if class_names is not None else label_names(model)
    if len(names) != model.num_classes:
        raise InputError(f"{len(names)} class names for a head of {model.num_classes} classes")
    data_config = model.data_config or DataConfig.for_model_config(model.config)
    engine = create_backend(backend, model, device=device, dtype=dtype)
    return Classifier(engine, data_config, names, batch_size=batch_size, budget=budget, model=model)


def _load_int8(source, backend: str, dtype, device, batch_size: int, class_names, budget) -> Classifier:
    """An artifact of ``squeezetime quantize``: its own class names and DataConfig, served by the int8 backend."""
    from .backends.int8 import read_artifact

    if backend not in ("auto", "int8"):
        raise BackendError(f"an int8 artifact runs on the int8 backend, not {backend!a}")
    artifact = read_artifact(source)
    names = list(class_names) if class_names is not None else artifact.class_names
    if len(names) != len(artifact.class_names):
        raise InputError(f"{len(names)} class names for a head of {len(artifact.class_names)} classes")
    engine = create_backend("int8", artifact, device=device or "cpu", dtype=dtype)
    return Classifier(engine, artifact.data_config, names, batch_size=batch_size, budget=budget)


__all__ = ["ClipScores", "Classifier", "DEMO", "is_clips", "label_names", "load"]
