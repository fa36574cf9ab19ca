"""model -> labels: classify a video (or ready clips) and report the top-k classes."""
from __future__ import annotations

import numpy as np
import torch

from .errors import InputError
from .models.registry import MEAN, STD
from .models.squeezetime import SqueezeTime
from .preprocess import as_uint8_clips, normalize_clip
from .video import VideoSource, sample_clips

Prediction = list[tuple[str, float]]


def label_names(model: SqueezeTime) -> list[str]:
    names = getattr(model, "class_names", None)
    if names:
        return list(names)
    return [f"class_{i}" for i in range(model.cls_head.fc_cls.out_features)]


@torch.inference_mode()
def clip_softmax(model: torch.nn.Module, clips, batch_size: int = 8) -> torch.Tensor:
    """uint8 clips (N, T, H, W, 3) -> per-clip softmax (N, classes), run ``batch_size`` clips at a time."""
    clips = as_uint8_clips(clips, num_frames=getattr(model, "num_frames", 16))
    config = getattr(model, "config", {})
    probs = []
    for start in range(0, clips.shape[0], batch_size):
        x = normalize_clip(clips[start:start + batch_size], config.get("mean", MEAN), config.get("std", STD))
        probs.append(model(x).float().softmax(dim=1))
    return torch.cat(probs)


def clip_probabilities(model: torch.nn.Module, clips, batch_size: int = 8) -> torch.Tensor:
    """uint8 clips (V, T, H, W, 3) -> mean softmax probability over the V views (mmaction2 'prob' averaging)."""
    return clip_softmax(model, clips, batch_size).mean(0)


def top_k(probabilities: torch.Tensor, names: list[str], topk: int = 5) -> Prediction:
    if topk < 1:
        raise InputError(f"topk must be >= 1, got {topk}")
    values, indices = probabilities.topk(min(topk, probabilities.numel()))
    return [(names[i], float(v)) for v, i in zip(values.tolist(), indices.tolist())]


def predict(model: SqueezeTime, video: VideoSource | np.ndarray, *, views: str = "1x1", topk: int = 5) -> Prediction:
    """Video (path, bytes, or uint8 clips (V, T, H, W, 3)) -> [(label, probability), ...] best first."""
    if model.cls_head is None:
        raise InputError("this model has no classification head (features only); it cannot predict labels")
    clips = video if isinstance(video, (np.ndarray, torch.Tensor)) else sample_clips(video, views, model.num_frames)
    return top_k(clip_probabilities(model, clips), label_names(model), topk)
