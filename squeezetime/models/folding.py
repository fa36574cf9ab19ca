"""Batch-norm folding: the one place where an eval-mode BatchNorm becomes the weights of a convolution.

Every inference path that removes batch norms (``squeezetime.optimize`` and the exported graph of
``squeezetime.export``) folds them with these functions, in float64, and casts the result once to the dtype
it runs in. Nothing here changes a module: the functions return new tensors.

    bn(x)                       = scale * x + shift                       (bn_affine)
    bn(conv(x))                 = conv'(x), W' = scale * W, b' = scale * b + shift   (fold_conv_bn)
    bn(temporal(g*x) + short(x) * s)
                                = temporal'(g*x) + short'(x) * s          (fold_ctl_bn)

The last one is the batch norm after a CTL module: its scale commutes with the product by the sigmoid map
``s``, so it goes into both branches' weights (and the short branch's bias); its shift goes into the bias of
the temporal 1x1 convolution alone.
"""
from __future__ import annotations

import torch
from torch import Tensor, nn

from .squeezetime import ChannelTimeLearning

__all__ = ["bn_affine", "fold_conv_bn", "fold_ctl_bn"]


def bn_affine(bn: nn.BatchNorm2d) -> tuple[Tensor, Tensor]:
    """Eval-mode batch norm as ``y = scale * x + shift`` per channel (float64)."""
    scale = bn.weight.detach().double() / torch.sqrt(bn.running_var.detach().double() + bn.eps)
    return scale, bn.bias.detach().double() - bn.running_mean.detach().double() * scale


def fold_conv_bn(conv: nn.Conv2d, bn: nn.BatchNorm2d | None = None,
                 affine: tuple[Tensor, Tensor] | None = None) -> tuple[Tensor, Tensor]:
    """(weight, bias) in float64 of ``conv`` followed by ``bn`` (if given) then by the per-output-channel
    ``affine = (scale, shift)`` (if given). A convolution without bias gets one."""
    w = conv.weight.detach().double()
    b = conv.bias.detach().double() if conv.bias is not None else torch.zeros(w.shape[0], dtype=torch.float64,
                                                                              device=w.device)
    for scale, shift in ([bn_affine(bn)] if bn is not None else []) + ([affine] if affine is not None else []):
        scale, shift = scale.to(w), shift.to(w)
        w, b = w * scale.view(-1, *([1] * (w.dim() - 1))), b * scale + shift
    return w, b


def fold_ctl_bn(ctl: ChannelTimeLearning, bn: nn.BatchNorm2d) -> tuple[tuple[Tensor, Tensor], tuple[Tensor, Tensor]]:
    """The batch norm after a CTL module folded into it: ``((temporal_w, temporal_b), (short_w, short_b))``,
    float64, so that ``bn(ctl(x)) = temporal'(g*x) + short'(x) * sigmoid(global(g*x))``."""
    scale, shift = bn_affine(bn)
    temporal = fold_conv_bn(ctl.temporal_conv, affine=(scale, shift))
    short = fold_conv_bn(ctl.spatial_conv.short_conv, affine=(scale, torch.zeros_like(shift)))
    return temporal, short
