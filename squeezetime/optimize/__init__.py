"""``squeezetime.optimize(model)``: the fastest inference path for a SqueezeTime model.

What it does to the (bit-faithful, eval-mode) network, without changing its forward signature:
- every batch norm folded: into the preceding convolution (stem, 1x1s, shortcut, strided downsample, the
  global branch of each IOI module, the temporal gate's first 1x1) or, for the one after each CTL module,
  into the fused ``ctl_combine`` operator (with the block's residual and ReLU where they follow);
- the temporal gate folded into the weights of the 1x1 temporal convolution per sample (a batched matmul
  instead of scaling the input), and, at batch 1, into the weights of the global branch's first conv;
- positional embeddings resized once per input size and cached;
- channels-last memory (the fast layout of oneDNN convolutions on CPU and of cuDNN on tensor cores);
- optionally ``torch.compile`` on top (the fake kernels make the custom operators traceable).

``fused=False`` builds the same graph with the eager reference of ``ctl_combine`` instead of the extension
(for ablation and for machines without the extension). ``dtype=torch.bfloat16`` (CPU) or ``torch.float16``
(CUDA) runs the network in reduced precision and returns float32 logits.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .. import ops
from ..models.registry import MEAN, STD
from ..models.squeezetime import (BasicBlock, Bottleneck, ChannelTimeLearning, SqueezeTime, resize_pos_embed)

__all__ = ["OptimizedSqueezeTime", "optimize"]


def _frozen(t: Tensor, dtype) -> nn.Parameter:
    return nn.Parameter(t.detach().to(dtype).contiguous(), requires_grad=False)


def bn_affine(bn: nn.BatchNorm2d) -> tuple[Tensor, Tensor]:
    """Eval-mode batch norm as y = scale * x + shift (float64)."""
    scale = bn.weight.double() / torch.sqrt(bn.running_var.double() + bn.eps)
    return scale, bn.bias.double() - bn.running_mean.double() * scale


def _mkldnn_usable() -> bool:
    mk = getattr(torch.ops, "mkldnn", None)
    return (torch.backends.mkldnn.is_available() and hasattr(mk, "_convolution_pointwise")
            and hasattr(mk, "_reorder_convolution_weight"))


class FoldedConv(nn.Module):
    """conv (+ folded batch norm) (+ ReLU) (+ residual add then ReLU, ``forward_add_relu``).

    On CPU the weights are also kept pre-packed in oneDNN's blocked layout and the ReLU / residual add run as
    oneDNN post-ops (what inductor's freezing does, here without compiling). Under torch.compile, on other
    devices or without oneDNN, the same maths runs through F.conv2d.
    """

    def __init__(self, conv: nn.Conv2d, bn: nn.BatchNorm2d | None, relu: bool, dtype, prepack: bool = False):
        super().__init__()
        w = conv.weight.double()
        b = conv.bias.double() if conv.bias is not None else torch.zeros(w.shape[0], dtype=torch.float64)
        if bn is not None:
            scale, shift = bn_affine(bn)
            w, b = w * scale.view(-1, 1, 1, 1), b * scale + shift
        self.weight, self.bias = _frozen(w, dtype), _frozen(b, dtype)
        self.stride, self.padding, self.groups, self.relu = conv.stride, conv.padding, conv.groups, relu
        self.prepack = prepack and _mkldnn_usable()
        self._packs: dict = {}  # input shape -> weights packed for it (oneDNN picks the layout per shape)

    def _use_packed(self, x: Tensor) -> bool:
        return (self.prepack and x.device.type == "cpu" and self.weight.device.type == "cpu"
                and not torch.compiler.is_compiling())

    def _pack_for(self, x: Tensor) -> Tensor:
        key = (tuple(x.shape), x.dtype)
        packed = self._packs.get(key)
        if packed is None:
            if len(self._packs) >= 16:  # bounded: many input sizes fall back to repacking
                self._packs.clear()
            packed = torch.ops.mkldnn._reorder_convolution_weight(
                self.weight, list(self.padding), list(self.stride), [1, 1], self.groups, list(x.shape))
            self._packs[key] = packed
        return packed

    def forward(self, x: Tensor) -> Tensor:
        if self._use_packed(x):
            return torch.ops.mkldnn._convolution_pointwise(
                x, self._pack_for(x), self.bias, list(self.padding), list(self.stride), [1, 1], self.groups,
                "relu" if self.relu else "none", [], "")
        y = F.conv2d(x, self.weight, self.bias, self.stride, self.padding, 1, self.groups)
        return F.relu(y) if self.relu else y

    def forward_add_relu(self, x: Tensor, other: Tensor) -> Tensor:
        """relu(conv(x) + other): the last conv of a bottleneck with its residual and ReLU."""
        if self._use_packed(x) and other.dtype == x.dtype and other.is_contiguous(memory_format=torch.channels_last):
            return torch.ops.mkldnn._convolution_pointwise.binary(
                x, other, self._pack_for(x), self.bias, list(self.padding), list(self.stride), [1, 1], self.groups,
                "add", 1.0, "relu", [], "")
        return F.relu(F.conv2d(x, self.weight, self.bias, self.stride, self.padding, 1, self.groups) + other)


class OptimizedCTL(nn.Module):
    """A CTL module and the batch norm after it: y = bn(temporal(g*x) + short(x) * sigmoid(global(g*x)))."""

    def __init__(self, ctl: ChannelTimeLearning, bn: nn.BatchNorm2d, dtype, fused: bool, prepack: bool = False):
        super().__init__()
        gate, ioi = ctl.param_conv, ctl.spatial_conv
        s1, b1 = bn_affine(gate[2])
        self.gate_w1 = _frozen(gate[1].weight.double().flatten(1) * s1[:, None], dtype)
        self.gate_b1 = _frozen(b1, dtype)
        self.gate_w2 = _frozen(gate[4].weight.flatten(1), dtype)
        self.temporal_w = _frozen(ctl.temporal_conv.weight.flatten(1), dtype)  # (Cout, Cin)
        self.short = FoldedConv(ioi.short_conv, None, False, dtype, prepack)
        self.glo0 = FoldedConv(ioi.glo_conv[0], ioi.glo_conv[1], True, dtype, prepack)
        self.glo3 = FoldedConv(ioi.glo_conv[3], ioi.glo_conv[4], True, dtype, prepack)
        self.glo6 = FoldedConv(ioi.glo_conv[6], None, False, dtype, prepack)
        self.pos_embed = _frozen(ioi.pos_embed, torch.float32)
        scale, shift = bn_affine(bn)
        self.scale, self.shift = _frozen(scale, torch.float32), _frozen(shift, torch.float32)
        self.fused = fused
        self._pos_cache: dict = {}

    def pos(self, like: Tensor) -> Tensor:
        """The positional embedding at the feature map's size, resized once per (size, dtype, device)."""
        key = (tuple(like.shape[-2:]), like.dtype, like.device)
        if torch.compiler.is_compiling():  # traced: let the compiler constant-fold it
            return resize_pos_embed(self.pos_embed, like.shape[-2:]).to(like.dtype)
        if key not in self._pos_cache:
            with torch.no_grad():
                p = resize_pos_embed(self.pos_embed, like.shape[-2:]).to(like.dtype)
                self._pos_cache[key] = p.contiguous(memory_format=torch.channels_last)
        return self._pos_cache[key]

    def forward(self, x: Tensor, residual: Tensor | None = None, relu: bool = True) -> Tensor:
        n, cin, h, w = x.shape
        mean = x.mean((2, 3))
        g = torch.sigmoid(F.linear(F.relu(F.linear(mean, self.gate_w1, self.gate_b1)), self.gate_w2))  # (N, Cin)
        # temporal 1x1 conv of the gated input == the input times per-sample weights W * g
        wt = self.temporal_w.unsqueeze(0) * g.unsqueeze(1)  # (N, Cout, Cin)
        if x.is_contiguous(memory_format=torch.channels_last) and not x.is_contiguous():
            t = torch.bmm(x.permute(0, 2, 3, 1).reshape(n, h * w, cin), wt.transpose(1, 2))
            temporal = t.view(n, h, w, -1).permute(0, 3, 1, 2)
        else:
            temporal = torch.bmm(wt, x.reshape(n, cin, h * w)).view(n, -1, h, w)
        if n == 1:  # the gate goes into the global branch's first conv weights too
            c0 = self.glo0
            y = F.conv2d(x, c0.weight * g.view(1, cin, 1, 1), c0.bias, c0.stride, c0.padding)
            y = F.relu(y)
        else:
            y = self.glo0(x * g.view(n, cin, 1, 1))
        y = self.glo6(self.glo3(y + self.pos(y)))
        short = self.short(x)
        if self.fused:
            return ops.ctl_combine(temporal, short, y, self.scale, self.shift, residual, relu)
        return ops.ctl_combine_reference(temporal, short, y, self.scale, self.shift, residual, relu)


class OptimizedBlock(nn.Module):
    def __init__(self, block, dtype, fused: bool, prepack: bool = False):
        super().__init__()
        self.downsample = FoldedConv(block.downsample[0], block.downsample[1], False, dtype, prepack) \
            if block.stride != 1 else None
        self.shortcut = FoldedConv(block.shortcut_conv[0], block.shortcut_conv[1], False, dtype, prepack) \
            if block.shortcut_conv is not None else None
        self.bottleneck = isinstance(block, Bottleneck)
        if self.bottleneck:
            self.conv1 = FoldedConv(block.conv1, block.bn1, True, dtype, prepack)
            self.ctl = OptimizedCTL(block.conv2, block.bn2, dtype, fused, prepack)
            self.conv3 = FoldedConv(block.conv3, block.bn3, False, dtype, prepack)
        else:
            self.ctl1 = OptimizedCTL(block.conv1, block.bn1, dtype, fused, prepack)
            self.ctl2 = OptimizedCTL(block.conv2, block.bn2, dtype, fused, prepack)

    def forward(self, x: Tensor) -> Tensor:
        if self.downsample is not None:
            x = self.downsample(x)
        residual = x if self.shortcut is None else self.shortcut(x)
        if self.bottleneck:
            return self.conv3.forward_add_relu(self.ctl(self.conv1(x), relu=True), residual)
        return self.ctl2(self.ctl1(x, relu=True), residual=residual, relu=True)


class OptimizedSqueezeTime(nn.Module):
    """Inference-only SqueezeTime: same forward signature (normalised (N, 3, T, H, W) -> logits/features)."""

    def __init__(self, model: SqueezeTime, dtype=torch.float32, fused: bool = True,
                 memory_format=torch.channels_last, prepack: bool = True):
        super().__init__()
        net = model.backbone.net
        self.dtype, self.fused, self.memory_format = dtype, fused, memory_format
        self.stem = FoldedConv(net.conv1, net.bn1, True, dtype, prepack)
        self.maxpool = net.maxpool
        self.blocks = nn.Sequential(*[OptimizedBlock(b, dtype, fused, prepack)
                                      for stage in (net.layer1, net.layer2, net.layer3, net.layer4) for b in stage])
        self.time_steps_out = net.time_steps_out
        self.fc = None
        if model.cls_head is not None:
            fc = model.cls_head.fc_cls
            self.fc_w, self.fc_b = _frozen(fc.weight, dtype), _frozen(fc.bias, dtype)
            self.fc = True
        self.class_names = model.class_names
        self.config = dict(model.config)

    @property
    def num_frames(self) -> int:
        return self.config.get("num_frames", 16)

    def features(self, x: Tensor) -> Tensor:
        x = x.to(self.dtype).contiguous(memory_format=self.memory_format)
        x = self.blocks(self.maxpool(self.stem(x)))
        if self.time_steps_out:
            n, _, h, w = x.shape
            x = x.contiguous().reshape(n, -1, self.time_steps_out, h, w)
        return x

    def head(self, x: Tensor) -> Tensor:
        return F.linear(x.mean((2, 3)), self.fc_w, self.fc_b).float()

    def forward(self, clip: Tensor) -> Tensor:
        """Normalised clips (N, 3, T, H, W) float -> float32 logits (N, classes) (features without a head)."""
        n, c, t, h, w = clip.shape
        x = self.features(clip.reshape(n, c * t, h, w))
        return self.head(x) if self.fc else x.float()

    def forward_frames(self, frames: Tensor) -> Tensor:
        """uint8 RGB frames (N, T, H, W, 3) -> logits, normalised and folded by the fused squeeze_time op."""
        mean = self.config.get("mean", MEAN)
        std = self.config.get("std", STD)
        x = ops.squeeze_time(frames, mean, std) if self.fused else ops.squeeze_time_reference(frames, mean, std)
        x = self.features(x)
        return self.head(x) if self.fc else x.float()


def optimize(model: SqueezeTime, *, dtype=torch.float32, fused: bool = True, compile: bool = False,
             memory_format=torch.channels_last) -> nn.Module:
    """The optimised inference module of ``model`` (same forward signature; the original is untouched).

    dtype: torch.float32 (within the golden tolerance of the official network), torch.bfloat16 (CPU) or
    torch.float16 (CUDA). fused: use the C++/CUDA operators (falls back to the pure-PyTorch path, with a
    one-time message, when the extension is not built). compile: wrap in ``torch.compile`` (inductor,
    freezing on), slow to compile on few cores.
    """
    if dtype not in (torch.float32, torch.bfloat16, torch.float16):
        raise ValueError(f"optimize: dtype must be float32, bfloat16 or float16, got {dtype}")
    if not isinstance(model, SqueezeTime):
        raise TypeError(f"optimize: expected a squeezetime.SqueezeTime model, got {type(model).__name__}")
    if fused:
        ops.extension_available()  # says once if the extension is missing
    device = next(model.parameters()).device
    with torch.no_grad():
        opt = OptimizedSqueezeTime(model.eval(), dtype=dtype, fused=fused, memory_format=memory_format,
                                   prepack=device.type == "cpu" and not compile)
    opt = opt.eval()
    if compile:
        import torch._inductor.config as inductor_config

        inductor_config.freezing = True
        opt.forward = torch.compile(opt.forward, dynamic=False)
    return opt
