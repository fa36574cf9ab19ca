"""The public-API fallback of ``FoldedConv``'s private oneDNN convolutions (``torch.ops.mkldnn.*``).

Those functions are not public API and some torch releases reject shapes that others accept: torch 2.11's
``_convolution_pointwise.binary`` and ``_convolution_pointwise_.binary`` with the ``add`` post-op raise
``RuntimeError: could not create a memory`` whenever the convolution's output is 1x1 (e.g. the last stage of a
48x40 input); 2.13 accepts it. ``squeezetime.optimize`` is public API, so such a call must not fail: the
convolution that raised runs, for that op and input shape, through ``F.conv2d`` with the post-ops in ATen (the
same maths, slower), and the process says so once (``OneDnnFallbackWarning``).
"""
from __future__ import annotations

import warnings

import torch
from torch import Tensor

from ..ops import first_caller_outside_package

# what the oneDNN ops' unary and binary post-op names mean, in ATen
UNARY = {"none": lambda y: y, "relu": torch.relu, "sigmoid": torch.sigmoid}
BINARY = {"add": torch.add, "mul": torch.mul}
# what a private call may raise when torch rejects its arguments (c10::Error is a RuntimeError)
PRIVATE_CALL_ERRORS = (RuntimeError, TypeError, ValueError)

_warned: list = []  # the one fallback this process reported (the first)


class OneDnnFallbackWarning(UserWarning):
    """A private oneDNN convolution failed; squeezetime.optimize computes that convolution through F.conv2d."""


def post_ops(y: Tensor, other: Tensor | None, binary: str | None, unary: str) -> Tensor:
    """unary(binary(y, other)), or unary(y) without a binary post-op."""
    if binary is not None:
        y = BINARY[binary](y, other)
    return UNARY[unary](y)


def first_line(error: Exception) -> str:
    return (str(error).strip().splitlines() or [""])[0]


def failures(module: torch.nn.Module) -> list:
    """'op at shape: error' for each private call of module's convolutions that fell back to the public path."""
    return [f"{op} at {shape}: {error}" for m in module.modules() if hasattr(m, "private_failures")
            for (op, shape, _), error in m.private_failures.items()]


def warn_fallback(op: str, x: Tensor, error: Exception) -> None:
    """Say once per process that a private oneDNN call failed and which public path replaces it."""
    if _warned:
        return
    _warned.append((op, tuple(x.shape)))
    warnings.warn(
        f"squeezetime.optimize: torch {torch.__version__}'s private torch.ops.mkldnn.{op} failed for input "
        f"{tuple(x.shape)} {x.dtype} ({type(error).__name__}: {first_line(error)}); that convolution runs through the "
        "public F.conv2d path for that shape from now on (same results, slower). Further fallbacks in this "
        "process are not reported.", OneDnnFallbackWarning, stacklevel=first_caller_outside_package())
