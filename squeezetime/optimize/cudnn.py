"""Fused cuDNN convolutions for the GPU path: conv + bias + ReLU, and conv + residual + bias + ReLU, each one
cuDNN call where ``F.conv2d`` + ``F.relu`` is three kernels (ATen adds a cuDNN convolution's bias in a separate
pass). With batch norms folded, most of the network's convolutions end that way; at large batches those extra
passes over float16 activations are memory-bound time. ``torch.cudnn_convolution_relu`` and
``torch.cudnn_convolution_add_relu`` are the ATen operators torch's own FX fuser uses.

cuDNN may decline a configuration (an error at the call): that convolution and input shape then runs the
unfused ATen maths from then on, with one warning per process. The decision is made in the warm-up runs before
a CUDA graph is captured, so a capture never meets the error. ``SQUEEZETIME_CUDNN_FUSION=0`` turns the fused
calls off.
"""
from __future__ import annotations

import os
import warnings

import torch
import torch.nn.functional as F
from torch import Tensor

_declined: set = set()  # (weight id, input shape, dtype, which) that cuDNN refused
_warned: list = []


def enabled(x: Tensor) -> bool:
    return (x.device.type == "cuda" and os.environ.get("SQUEEZETIME_CUDNN_FUSION", "1") != "0"
            and torch.backends.cudnn.is_available() and not torch.compiler.is_compiling())


def conv_relu(x: Tensor, weight: Tensor, bias: Tensor, stride, padding, groups: int) -> Tensor:
    """relu(conv(x) + bias)."""
    key = (id(weight), tuple(x.shape), x.dtype, "relu")
    if enabled(x) and key not in _declined:
        try:
            return torch.cudnn_convolution_relu(x, weight, bias, stride, padding, (1, 1), groups)
        except RuntimeError as error:
            _decline(key, error)
    return F.relu(F.conv2d(x, weight, bias, stride, padding, 1, groups))


def conv_add_relu(x: Tensor, weight: Tensor, bias: Tensor, other: Tensor, stride, padding, groups: int) -> Tensor:
    """relu(conv(x) + bias + other): a bottleneck's last convolution with its residual."""
    key = (id(weight), tuple(x.shape), x.dtype, "add_relu")
    if enabled(x) and key not in _declined and other.dtype == x.dtype:
        try:
            return torch.cudnn_convolution_add_relu(x, weight, other, 1.0, bias, stride, padding, (1, 1), groups)
        except RuntimeError as error:
            _decline(key, error)
    return F.relu(F.conv2d(x, weight, bias, stride, padding, 1, groups) + other)


def _decline(key: tuple, error: Exception) -> None:
    _declined.add(key)
    if not _warned:
        _warned.append(True)
        warnings.warn(f"squeezetime: cuDNN declined a fused convolution (input {key[1]}, {key[2]}: "
                      f"{str(error).splitlines()[0][:200]}); that convolution runs unfused from now on", stacklevel=3)


__all__ = ["conv_add_relu", "conv_relu", "enabled"]
