"""Pure-PyTorch reference implementations of the squeezetime operators: the definition the kernels are tested
against, the path used when the C++ extension is not built, and (written in functional ATen, without tensor
constants) the decompositions that replace the operators in exported graphs (``export.graph``)."""
from __future__ import annotations

from typing import Sequence

import torch
from torch import Tensor

from ..models.registry import MEAN, STD


def squeeze_time_reference(frames: Tensor, mean: Sequence[float] = MEAN, std: Sequence[float] = STD) -> Tensor:
    """uint8 (N, T, H, W, 3) -> float32 (N, 3*T, H, W), channel c*T + t, ``(float32(x) - mean[c]) / std[c]``.

    The one ATen definition of ``squeeze_time``: fallback, test oracle and export decomposition. Each channel is
    ``(x - m) / s`` with ``m``, ``s`` Python floats (rounded to float32 by ATen, as the kernels do) and a true
    float32 division, so the CPU kernel matches it bit for bit; no tensor constants, so a decomposition can
    use it, and no shape arithmetic, so a traced batch dimension stays symbolic.
    """
    if frames.dtype != torch.uint8:
        raise TypeError(f"squeeze_time: frames must be uint8 RGB, got {frames.dtype}")
    if frames.dim() != 5 or frames.shape[-1] != 3:
        raise ValueError(f"squeeze_time: frames must be (N, T, H, W, 3), got {tuple(frames.shape)}")
    if len(mean) != 3 or len(std) != 3:
        raise ValueError(f"squeeze_time: mean and std need 3 values (RGB), got {len(mean)} and {len(std)}")
    channels = [(frames[..., c].to(torch.float32) - float(mean[c])) / float(std[c]) for c in range(3)]
    return torch.stack(channels, dim=1).flatten(1, 2)  # (N, 3, T, H, W) -> (N, 3*T, H, W), contiguous


def ctl_combine_reference(temporal: Tensor, short: Tensor, glo: Tensor, scale: Tensor, shift: Tensor,
                          residual: Tensor | None = None, relu: bool = False) -> Tensor:
    """``scale[c] * (temporal + short * sigmoid(glo)) + shift[c]`` (+ residual) (ReLU), computed in float32
    (float64 inputs stay float64) and rounded once to the input dtype; keeps the input's memory format."""
    dtype = temporal.dtype
    work = torch.float64 if dtype == torch.float64 else torch.float32
    c = temporal.shape[1]
    y = temporal.to(work) + short.to(work) * torch.sigmoid(glo.to(work))
    y = y * scale.to(work).view(1, c, 1, 1) + shift.to(work).view(1, c, 1, 1)
    if residual is not None:
        y = y + residual.to(work)
    if relu:
        y = torch.relu(y)
    return y.to(dtype)


def gate_scale_reference(x: Tensor, w1: Tensor, b1: Tensor, w2: Tensor) -> Tensor:
    """``x * g[n, c]`` with ``g = sigmoid(w2 @ relu(w1 @ mean_hw(x) + b1))`` (gate in float32, x's dtype out)."""
    m = x.float().mean((2, 3))
    g = torch.sigmoid(torch.relu(m @ w1.float().t() + b1.float()) @ w2.float().t())
    return (x.float() * g[:, :, None, None]).to(x.dtype)
