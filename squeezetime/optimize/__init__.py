"""``squeezetime.optimize(model)``: the fastest inference path for a SqueezeTime model.

What it does to the (bit-faithful, eval-mode) network, without changing its forward signature:
- every batch norm folded: into the preceding convolution (stem, 1x1s, shortcut, strided downsample, the
  global branch of each IOI module, the temporal gate's first 1x1) or, for the one after each CTL module,
  into its short and temporal convolutions (scale into both, shift into the temporal one's bias), with the
  folding of ``models.folding`` (the one the exported graph uses too);
- the temporal gate applied to the input once (the gated input feeds the temporal 1x1 conv and the global
  branch); on CPU (fused=True) the gate and that product are one operator (``ops.gate_scale``), the CTL
  module's tail (sigmoid, product, sum, ReLU) runs as oneDNN post-ops of its convolutions, the bottleneck's
  residual add + ReLU as the in-place sum post-op of its last conv, and the positional embedding as a cached
  constant added to the 7x7 convolution's output (the conv of the embedding, by linearity);
- positional embeddings resized once per input size and cached;
- channels-last memory (the fast layout of oneDNN convolutions on CPU and of cuDNN on tensor cores); on CPU
  the input is written one clip at a time into a reused per-thread channels-last buffer: from uint8 frames
  (``forward_frames``, what the backends call) by ``squeeze_time.out`` in one pass, from normalised float
  clips (``forward``) by a tiled kernel (``ops.to_channels_last``);
- optionally ``torch.compile`` on top (the fake kernels make the custom operators traceable).

``fused=False`` builds the same graph without the extension's operators (the CTL tail through the eager
reference of ``ctl_combine``, ATen for the gate and the input conversion), for ablation and for machines
without the extension; the traced paths (torch.compile, torch.export) use ``ctl_combine`` for the tail.
``dtype=torch.bfloat16`` (CPU) or ``torch.float16`` (CUDA) runs the network in reduced precision and
returns float32 logits.
"""
from __future__ import annotations

import threading

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .. import ops
from . import cudnn, onednn
from .compile_settings import compile_with_settings
from ..models.folding import bn_affine, fold_conv_bn, fold_ctl_bn  # noqa: F401 - bn_affine: the old import path
from ..models.registry import MEAN, STD
from ..models.squeezetime import Bottleneck, ChannelTimeLearning, SqueezeTime, resize_pos_embed
from ..errors import InputError, ModelTypeError

__all__ = ["OptimizedSqueezeTime", "optimize"]


def _frozen(t: Tensor, dtype) -> nn.Parameter:
    return nn.Parameter(t.detach().to(dtype).contiguous(), requires_grad=False)


def _mkldnn_usable(dtype=torch.float32) -> bool:
    """oneDNN's pre-packed convolutions exist here, for this dtype (bfloat16 needs AVX-512 BW/VL/DQ or
    AVX-NE-CONVERT: without them oneDNN refuses to pack bfloat16 weights; float16 likewise)."""
    mk = getattr(torch.ops, "mkldnn", None)
    usable = (torch.backends.mkldnn.is_available() and hasattr(mk, "_convolution_pointwise")
              and hasattr(mk, "_reorder_convolution_weight"))
    check = {torch.bfloat16: "_is_mkldnn_bf16_supported", torch.float16: "_is_mkldnn_fp16_supported"}.get(dtype)
    if usable and check is not None:
        usable = bool(getattr(mk, check, lambda: False)())
    return usable


_buffers = threading.local()


def _input_buffer(shape: tuple, dtype) -> Tensor:
    """A channels-last CPU tensor of this shape and dtype, one per thread, reused across calls (a fresh one
    of a clip's size costs page faults on every call)."""
    cache = getattr(_buffers, "cache", None)
    if cache is None:
        cache = _buffers.cache = {}
    key = (shape, dtype)
    buf = cache.get(key)
    if buf is None:
        if len(cache) >= 4:
            cache.clear()
        with torch.inference_mode(False):  # a normal tensor: writable inside and outside inference mode
            buf = cache[key] = torch.empty(shape, dtype=dtype, memory_format=torch.channels_last)
    return buf


class FoldedConv(nn.Module):
    """conv (+ folded batch norm) (+ ReLU) (+ residual add then ReLU, ``forward_add_relu``).

    The weights are ``models.folding.fold_conv_bn(conv, bn)`` (float64, cast once to ``dtype``), or the
    already folded ``weights`` (weight, bias) given. On CPU they are also kept pre-packed in oneDNN's blocked
    layout and the ReLU / residual add run as oneDNN post-ops (what inductor's freezing does, here without
    compiling). On a GPU the ReLU and the residual add run inside cuDNN's fused convolutions (``cudnn``). Under
    torch.compile, on other devices or without oneDNN, the same maths runs through F.conv2d.
    Those oneDNN functions are private torch API: a call that raises runs, for that op and input shape, the
    same maths through F.conv2d and ATen from then on (``onednn``: one warning per process).
    """

    def __init__(self, conv: nn.Conv2d, bn: nn.BatchNorm2d | None, relu: bool, dtype, prepack: bool = False,
                 weights: tuple[Tensor, Tensor] | None = None):
        super().__init__()
        w, b = weights if weights is not None else fold_conv_bn(conv, bn)
        self.weight, self.bias = _frozen(w, dtype), _frozen(b, dtype)
        self.stride, self.padding, self.groups, self.relu = conv.stride, conv.padding, conv.groups, relu
        self._pad, self._str = list(conv.padding), list(conv.stride)  # the oneDNN ops' int[] arguments
        self.prepack = prepack and _mkldnn_usable(dtype)
        self._packs: dict = {}  # input shape -> weights packed for it (oneDNN picks the layout per shape)
        self.private_failures: dict = {}  # (op, input shape, dtype) whose private call raised -> the error

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
                self.weight, self._pad, self._str, [1, 1], self.groups, list(x.shape))
            self._packs[key] = packed
        return packed

    def _conv(self, x: Tensor) -> Tensor:
        """The convolution (folded bias included) through public API."""
        return F.conv2d(x, self.weight, self.bias, self.stride, self.padding, 1, self.groups)

    def _guarded(self, op: str, x: Tensor, private, public) -> Tensor:
        """private() (a torch.ops.mkldnn call), unless it raised before for this op and input shape: then, and
        from then on for that shape, public() (the same maths through public API)."""
        key = (op, tuple(x.shape), x.dtype)
        if key not in self.private_failures:
            try:
                return private()
            except onednn.PRIVATE_CALL_ERRORS as error:  # oneDNN rejects a shape before writing anything
                self.private_failures[key] = f"{type(error).__name__}: {onednn.first_line(error)}"
                onednn.warn_fallback(op, x, error)
        return public()

    def packed(self, x: Tensor, unary: str) -> Tensor:
        """unary(conv(x)) with the pre-packed weights (``_use_packed(x)`` must hold)."""
        return self._guarded(
            f"_convolution_pointwise.default (unary {unary})", x,
            lambda: torch.ops.mkldnn._convolution_pointwise.default(
                x, self._pack_for(x), self.bias, self._pad, self._str, [1, 1], self.groups, unary, [], ""),
            lambda: onednn.post_ops(self._conv(x), None, None, unary))

    def packed_binary(self, x: Tensor, other: Tensor, binary: str, unary: str) -> Tensor:
        """unary(binary(conv(x), other)) into a new tensor (oneDNN post-ops), with the pre-packed weights."""
        return self._guarded(
            f"_convolution_pointwise.binary ({binary}, {unary})", x,
            lambda: torch.ops.mkldnn._convolution_pointwise.binary(
                x, other, self._pack_for(x), self.bias, self._pad, self._str, [1, 1], self.groups,
                binary, 1.0, None if unary == "none" else unary, [], None),
            lambda: onednn.post_ops(self._conv(x), other, binary, unary))

    def packed_into(self, other: Tensor, x: Tensor, binary: str, unary: str) -> Tensor:
        """other = unary(binary(conv(x), other)), in place (oneDNN post-ops), with the pre-packed weights."""
        return self._guarded(
            f"_convolution_pointwise_.binary ({binary}, {unary})", x,
            lambda: torch.ops.mkldnn._convolution_pointwise_.binary(
                other, x, self._pack_for(x), self.bias, self._pad, self._str, [1, 1], self.groups,
                binary, 1.0, None if unary == "none" else unary, [], None),
            lambda: other.copy_(onednn.post_ops(self._conv(x), other, binary, unary)))

    def forward(self, x: Tensor) -> Tensor:
        if self._use_packed(x):
            return self.packed(x, "relu" if self.relu else "none")
        if self.relu and cudnn.enabled(x):  # GPU: conv + bias + ReLU in one cuDNN call
            return cudnn.conv_relu(x, self.weight, self.bias, self.stride, self.padding, self.groups)
        y = self._conv(x)
        return F.relu(y) if self.relu else y

    def forward_add_relu(self, x: Tensor, other: Tensor, inplace: bool = False) -> Tensor:
        """relu(conv(x) + other): the last conv of a bottleneck with its residual and ReLU. inplace: into
        ``other`` (oneDNN's sum post-op, much faster than its binary add), for a residual no longer needed."""
        if self._use_packed(x) and other.dtype == x.dtype and other.is_contiguous(memory_format=torch.channels_last):
            if inplace:
                return self.packed_into(other, x, "add", "relu")
            return self.packed_binary(x, other, "add", "relu")
        if cudnn.enabled(x):  # GPU: conv + residual + bias + ReLU in one cuDNN call
            return cudnn.conv_add_relu(x, self.weight, self.bias, other, self.stride, self.padding, self.groups)
        return F.relu(self._conv(x) + other)


class OptimizedCTL(nn.Module):
    """A CTL module and the batch norm after it: y = bn(temporal(g*x) + short(x) * sigmoid(global(g*x))).

    The batch norm's scale goes into the short conv's weights (it commutes with the sigmoid product) and its
    scale and shift into the temporal 1x1 conv's, so the module ends in ``temporal' + short' * sigmoid(glo)``
    (+ residual) (ReLU). On CPU with pre-packed weights (fused=True) that tail is three oneDNN convolutions
    with post-ops and no separate pass: glo6 with a sigmoid, short with a multiply by that, temporal
    accumulated into the product in place (oneDNN's sum post-op) with the ReLU. The positional embedding added
    before the 7x7 conv becomes, by linearity, the 7x7 conv of the embedding (a constant, cached per input
    size) added as that conv's post-op; the gate and its product with x are one call (``ops.gate_scale``).
    """

    def __init__(self, ctl: ChannelTimeLearning, bn: nn.BatchNorm2d, dtype, fused: bool, prepack: bool = False):
        super().__init__()
        gate, ioi = ctl.param_conv, ctl.spatial_conv
        w1, b1 = fold_conv_bn(gate[1], gate[2])
        self.gate_w1 = _frozen(w1.flatten(1), dtype)
        self.gate_b1 = _frozen(b1, dtype)
        self.gate_w2 = _frozen(gate[4].weight.flatten(1), dtype)
        # float32 for the fused gate_scale kernel (it computes the gate in float32), shared when dtype is float32
        self._gate_f32 = tuple(t.detach() if dtype == torch.float32 else t.detach().float()
                               for t in (self.gate_w1, self.gate_b1, self.gate_w2))
        temporal, short = fold_ctl_bn(ctl, bn)
        self.temporal = FoldedConv(ctl.temporal_conv, None, False, dtype, prepack, weights=temporal)
        self.short = FoldedConv(ioi.short_conv, None, False, dtype, prepack, weights=short)
        self.glo0 = FoldedConv(ioi.glo_conv[0], ioi.glo_conv[1], True, dtype, prepack)
        self.glo3 = FoldedConv(ioi.glo_conv[3], ioi.glo_conv[4], True, dtype, prepack)
        self.glo6 = FoldedConv(ioi.glo_conv[6], None, False, dtype, prepack)
        self.pos_embed = _frozen(ioi.pos_embed, torch.float32)
        # the batch norm is in the convolutions: ctl_combine (unpacked paths) runs with unit scale, zero shift
        self.scale = _frozen(torch.ones_like(bn.weight), torch.float32)
        self.shift = _frozen(torch.zeros_like(bn.weight), torch.float32)
        self.fused = fused
        self._pos_cache: dict = {}
        self._pos_conv_cache: dict = {}

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

    def pos_conv(self, like: Tensor) -> Tensor:
        """glo3's convolution (no bias) of the positional embedding, expanded to like's batch: cached."""
        key = (tuple(like.shape), like.dtype, like.device)
        p = self._pos_conv_cache.get(key)
        if p is None:
            if len(self._pos_conv_cache) >= 16:
                self._pos_conv_cache.clear()
            with torch.no_grad():
                c = self.glo3
                p = F.conv2d(self.pos(like).double(), c.weight.double(), None, c.stride, c.padding, 1, c.groups)
                p = p.to(like.dtype).expand(like.shape).contiguous(memory_format=torch.channels_last)
            self._pos_conv_cache[key] = p
        return p

    def gate(self, x: Tensor) -> Tensor:
        """The temporal gate g (N, Cin) of x."""
        h = torch.addmm(self.gate_b1, x.mean((2, 3)), self.gate_w1.t()).relu_()
        return torch.mm(h, self.gate_w2.t()).sigmoid_()

    def forward(self, x: Tensor, residual: Tensor | None = None, relu: bool = True) -> Tensor:
        n, cin = x.shape[:2]
        packed = self.short._use_packed(x) and x.is_contiguous(memory_format=torch.channels_last)
        if self.fused and packed:
            xg = ops.gate_scale(x, *self._gate_f32)
            y = self.glo0.packed(xg, "relu")
            y = self.glo3.packed_binary(y, self.pos_conv(y), "add", "relu")
            out = self.glo6.packed(y, "sigmoid")  # sigmoid(glo)
            out = self.short.packed_binary(x, out, "mul", "none")  # short' * sigmoid(glo)
            if residual is not None:
                out.add_(residual)
            return self.temporal.packed_into(out, xg, "add", "relu" if relu else "none")
        if self.fused and x.device.type == "cuda" and ops.has_cuda_kernel("gate_scale"):
            xg = ops.gate_scale(x, *self._gate_f32)  # three launches instead of ATen's six
        else:
            xg = x * self.gate(x).view(n, cin, 1, 1)
        y = self.glo6(self.glo3(self.glo0(xg) + self.pos(xg)))
        temporal, short = self.temporal(xg), self.short(x)
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
            # the residual (this block's input or its shortcut) is not used after: conv3 accumulates into it
            return self.conv3.forward_add_relu(self.ctl(self.conv1(x), relu=True), residual, inplace=True)
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

    def _fast_input(self, x: Tensor) -> bool:
        """The CPU path whose input goes through the extension's kernels into a reused channels-last buffer."""
        return self.fused and self.memory_format == torch.channels_last and self.stem._use_packed(x)

    def _stem_per_clip(self, shape: tuple, write_input) -> Tensor:
        # the input is the network's largest tensor: written channels-last by a kernel, one clip at a time (a
        # whole batch is a fresh allocation of tens of MB, page-faulted on every call), into a per-thread buffer
        # reused from call to call; each clip goes through the stem and the max-pool (which divide its size by
        # 16) before the next is written (the stem's output is a new tensor)
        buf = _input_buffer((1,) + tuple(shape[1:]), self.dtype)
        parts = [self.maxpool(self.stem(write_input(i, buf))) for i in range(shape[0])]
        x = parts[0] if len(parts) == 1 else torch.cat(parts)
        cl = torch.channels_last
        return x if x.is_contiguous(memory_format=cl) else x.contiguous(memory_format=cl)

    def features(self, x: Tensor) -> Tensor:
        if self._fast_input(x) and x.dtype == torch.float32 and ops.has_kernel("to_channels_last"):
            x = self._stem_per_clip(x.shape, lambda i, buf: torch.ops.squeezetime.to_channels_last(
                x[i:i + 1], out=buf))
        else:
            x = self.maxpool(self.stem(x.to(dtype=self.dtype, memory_format=self.memory_format)))
        return self.blocks_and_fold(x)

    def blocks_and_fold(self, x: Tensor) -> Tensor:
        x = self.blocks(x)
        if self.time_steps_out:
            n, _, h, w = x.shape
            x = x.contiguous().reshape(n, -1, self.time_steps_out, h, w)
        return x

    def forward_input(self, x: Tensor) -> Tensor:
        """The network from its input tensor (N, 3T, H, W), already normalised and folded, in ``dtype`` and the
        module's memory format (what squeeze_time.out writes) -> float32 logits (features without a head).
        The GPU path's CUDA graphs capture this (``optimize.cuda_graphs``)."""
        x = self.blocks_and_fold(self.maxpool(self.stem(x)))
        return self.head(x) if self.fc else x.float()

    def head(self, x: Tensor) -> Tensor:
        return F.linear(x.mean((2, 3)), self.fc_w, self.fc_b).float()

    def forward(self, clip: Tensor) -> Tensor:
        """Normalised clips (N, 3, T, H, W) float -> float32 logits (N, classes) (features without a head)."""
        n, c, t, h, w = clip.shape
        x = self.features(clip.reshape(n, c * t, h, w))
        return self.head(x) if self.fc else x.float()

    def forward_frames(self, frames: Tensor, mean=None, std=None) -> Tensor:
        """uint8 RGB frames (N, T, H, W, 3) -> logits: normalised and folded by the squeeze_time operator, on
        the fused CPU path straight into the stem's channels-last input (one pass over the frames, no float
        NCHW tensor). ``mean``/``std``: the data config's (default: the model config's)."""
        mean = list(self.config.get("mean", MEAN) if mean is None else mean)
        std = list(self.config.get("std", STD) if std is None else std)
        if self._fast_input(frames) and ops.has_kernel("squeeze_time.out") and frames.dtype == torch.uint8:
            n, t, h, w, c = frames.shape
            x = self._stem_per_clip((n, c * t, h, w), lambda i, buf: torch.ops.squeezetime.squeeze_time.out(
                frames[i:i + 1], mean, std, out=buf))
            x = self.blocks_and_fold(x)
        else:
            squeeze = ops.squeeze_time if self.fused else ops.squeeze_time_reference
            x = self.features(squeeze(frames, mean, std))
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
        raise InputError(f"optimize: dtype must be float32, bfloat16 or float16, got {dtype}")
    if not isinstance(model, SqueezeTime):
        raise ModelTypeError(f"optimize: expected a squeezetime.SqueezeTime model, got {type(model).__name__}")
    if fused:
        ops.extension_available()  # says once if the extension is missing
    device = next(model.parameters()).device
    with torch.no_grad():
        opt = OptimizedSqueezeTime(model.eval(), dtype=dtype, fused=fused, memory_format=memory_format,
                                   prepack=device.type == "cpu" and not compile)
    opt = opt.eval()
    if compile:  # compiled at the first call of each input shape: the settings go with every call
        opt.forward = compile_with_settings(opt.forward, dynamic=False)
    return opt
