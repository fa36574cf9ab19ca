"""What a classification returns: ``Prediction``, the top-k labels of a probability vector, and the top-k check.

Shared by ``squeezetime.classifier`` (a video's views averaged) and ``squeezetime.timeline`` (one window each).
"""
from __future__ import annotations

from typing import Sequence

import numpy as np
from torch import Tensor

from .errors import InputError

Prediction = list[tuple[str, float]]  # [(label, probability), ...], best first


def check_topk(topk) -> int:
    """``topk`` as an int, or ``InputError`` when it is not an integer >= 1 (bools refused)."""
    if isinstance(topk, bool) or not isinstance(topk, (int, np.integer)) or topk < 1:
        raise InputError(f"topk must be an integer >= 1, got {topk!a}")
    return int(topk)


def top_k(probabilities: Tensor, names: Sequence[str], topk: int = 5) -> Prediction:
    """[(label, probability)] of the ``topk`` best classes, best first."""
    values, indices = probabilities.topk(min(check_topk(topk), probabilities.numel()))
    return [(names[i], float(v)) for v, i in zip(values.tolist(), indices.tolist())]


__all__ = ["Prediction", "check_topk", "top_k"]
