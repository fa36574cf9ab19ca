"""``squeezetime.predict(model, video)``: the one-call form of ``squeezetime.load(model).classify(video)``.

The ``Classifier`` of a model (default backend) is built on first use and kept while the model lives; a change
to the model's weights (in place or replaced) builds it anew.
"""
from __future__ import annotations

import numpy as np
import torch

from .errors import InputError
from .classifier import Classifier, label_names, load
from .models.squeezetime import SqueezeTime
from .prediction import Prediction, top_k
from .video import VideoSource

CACHE_ATTRIBUTE = "_squeezetime_classifier"  # on the model itself: the classifier refers to the model, so a
# weak-keyed table would keep both alive; an attribute makes a cycle the garbage collector frees


def _weights_version(model: SqueezeTime) -> tuple:
    """Changes whenever a parameter or buffer is replaced or modified in place (tensor version counters)."""
    return tuple((id(t), t._version) for t in model.state_dict(keep_vars=True).values())


def classifier_for(model: SqueezeTime) -> Classifier:
    """The cached default-backend ``Classifier`` of ``model``."""
    if not isinstance(model, SqueezeTime):
        raise InputError(f"expected a squeezetime.SqueezeTime model, got {type(model).__name__}")
    version = _weights_version(model)
    cached = model.__dict__.get(CACHE_ATTRIBUTE)
    if cached is None or cached[0] != version:
        classifier = load(model)
        cached = model.__dict__[CACHE_ATTRIBUTE] = (_weights_version(model), classifier)
    return cached[1]


def predict(model: SqueezeTime, video: VideoSource | np.ndarray, *, views: str = "1x1", topk: int = 5) -> Prediction:
    """Video (path, bytes, or uint8 clips (V, T, H, W, 3)) -> [(label, probability), ...] best first."""
    return classifier_for(model).classify(video, views=views, topk=topk)


def clip_probabilities(model: SqueezeTime, clips) -> torch.Tensor:
    """uint8 clips (V, T, H, W, 3) -> mean softmax probability over the V views (mmaction2 'prob' averaging)."""
    return classifier_for(model).scores(clips).mean(0)


__all__ = ["Prediction", "classifier_for", "clip_probabilities", "label_names", "predict", "top_k"]
