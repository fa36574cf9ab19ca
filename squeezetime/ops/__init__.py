"""Fused operators of the ``squeezetime`` torch library (C++/CUDA extension) with pure-PyTorch fallbacks.

    squeeze_time(frames, mean, std)  uint8 (N, T, H, W, 3) -> normalised float32 (N, 3*T, H, W), channel c*T + t
    ctl_combine(temporal, short, glo, scale, shift, residual=None, relu=False)
    gate_scale(x, w1, b1, w2)  x * sigmoid(w2 @ relu(w1 @ mean_hw(x) + b1)) per (n, c): a CTL module's temporal
        gate applied to its input (CPU kernel, float32 and bfloat16; reference elsewhere)
    to_channels_last(x, dtype) / to_channels_last.out(x, *, out)  float32 NCHW -> channels-last float32 or
        bfloat16 in one tiled pass (CPU; the network's input, its largest tensor)
        scale[c] * (temporal + short * sigmoid(glo)) + shift[c] (+ residual) (ReLU): the end of a CTL module
        and the batch norm after it, in one pass.

The extension (``python setup.py build_ext --inplace``) registers ``torch.ops.squeezetime.*`` with CPU kernels
(float32, bfloat16) and, when built against a CUDA torch, CUDA kernels (float32, float16, bfloat16). Fake kernels
are registered here so that torch.compile and torch.export see through the operators. Without a built extension
the functions below run the reference implementations and say so once (SQUEEZETIME_DISABLE_EXT=1 forces that).
"""
from __future__ import annotations

import importlib
import os
import warnings
from typing import Sequence

import torch
from torch import Tensor

from ..models.registry import MEAN, STD
from .reference import ctl_combine_reference, gate_scale_reference, squeeze_time_reference

__all__ = ["has_kernel", "ctl_combine", "ctl_combine_reference", "gate_scale", "gate_scale_reference", "cuda_extension_available", "extension_available",
           "extension_error", "squeeze_time", "squeeze_time_reference"]

_state: dict = {}


class ExtensionNotBuiltWarning(UserWarning):
    pass


def _load() -> dict:
    if _state:
        return _state
    _state.update(cpu=False, cuda=False, error=None)
    if os.environ.get("SQUEEZETIME_DISABLE_EXT") == "1":
        _state["error"] = "disabled by SQUEEZETIME_DISABLE_EXT=1"
    else:
        try:
            importlib.import_module("squeezetime._C")
            _state["cpu"] = hasattr(torch.ops.squeezetime, "ctl_combine")
        except (ImportError, OSError) as e:
            _state["error"] = f"{type(e).__name__}: {e}"
    if _state["cpu"]:
        from . import _fake

        _fake.register()
        if torch.version.cuda:
            try:
                importlib.import_module("squeezetime._C_cuda")
                _state["cuda"] = True
            except (ImportError, OSError) as e:
                _state["cuda_error"] = f"{type(e).__name__}: {e}"
    else:
        warnings.warn("squeezetime: C++ extension not built, using pure-PyTorch path (build it with "
                      f"`python setup.py build_ext --inplace`; {_state['error']})", ExtensionNotBuiltWarning,
                      stacklevel=3)
    return _state


def extension_available() -> bool:
    """True when ``torch.ops.squeezetime`` has its CPU kernels (and the schema)."""
    return _load()["cpu"]


def cuda_extension_available() -> bool:
    """True when the CUDA kernels (squeezetime._C_cuda) are loaded."""
    return _load()["cuda"]


def extension_error() -> str | None:
    return _load()["error"]


def has_kernel(name: str) -> bool:
    """True when the built extension has the CPU operator ``name`` (one built before it existed lacks it)."""
    state = _load()
    key = "has_" + name
    if key not in state:
        state[key] = bool(state["cpu"]) and hasattr(torch.ops.squeezetime, name)
    return state[key]


def _use_kernel(device: torch.device) -> bool:
    state = _load()
    return state["cpu"] if device.type == "cpu" else (device.type == "cuda" and state["cuda"])


def squeeze_time(frames: Tensor, mean: Sequence[float] = MEAN, std: Sequence[float] = STD) -> Tensor:
    """uint8 RGB frames (N, T, H, W, 3) -> float32 (N, 3*T, H, W), exactly ``normalize_clip(frames).reshape``."""
    if _use_kernel(frames.device):
        return torch.ops.squeezetime.squeeze_time(frames, [float(m) for m in mean], [float(s) for s in std])
    return squeeze_time_reference(frames, mean, std)


def ctl_combine(temporal: Tensor, short: Tensor, glo: Tensor, scale: Tensor, shift: Tensor,
                residual: Tensor | None = None, relu: bool = False) -> Tensor:
    """``scale[c] * (temporal + short * sigmoid(glo)) + shift[c]`` (+ residual) (ReLU) in one pass."""
    if _use_kernel(temporal.device):
        return torch.ops.squeezetime.ctl_combine(temporal, short, glo, scale, shift, residual, relu)
    return ctl_combine_reference(temporal, short, glo, scale, shift, residual, relu)


def gate_scale(x: Tensor, w1: Tensor, b1: Tensor, w2: Tensor) -> Tensor:
    """``x * sigmoid(w2 @ relu(w1 @ mean_hw(x) + b1))[n, c]`` in one call (the kernel exists on CPU only)."""
    if has_kernel("gate_scale") and x.device.type == "cpu":
        return torch.ops.squeezetime.gate_scale(x, w1, b1, w2)
    return gate_scale_reference(x, w1, b1, w2)
