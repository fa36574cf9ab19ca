"""The inference graph every exporter starts from: uint8 CLIP -> (LOGITS, PROBS).

Serving takes decoded frames as they come out of the decoder, uint8 RGB ``(N, T, H, W, 3)``; the graph
normalises them (``(x - mean) / std``), folds time into channels (channel index ``c*T + t``, what
``squeeze_time`` does), runs the network and returns the logits and their softmax, both float32. Input and
output names are those of the Triton ``squeezetime`` model: CLIP, LOGITS, PROBS.

``fold_for_inference`` prepares the network for export: every BatchNorm folded into the convolution before
it (including the BatchNorm that follows a CTL module, folded into its two linear branches), with the
float64 folding of ``models.folding`` that ``squeezetime.optimize`` uses too, and every positional embedding
resized once for the export resolution, so that the graph has no BatchNorm and no interpolation. It is exact
up to float32 rounding (checked against the golden tolerance in the tests).
"""
from __future__ import annotations

import copy

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..models.folding import fold_conv_bn, fold_ctl_bn
from ..models.registry import MEAN, STD
from ..models.squeezetime import (BasicBlock, Bottleneck, ChannelTimeLearning, InterTemporalObjectInteraction,
                                  SqueezeTime, SqueezeTimeNet, TemporalGate, resize_pos_embed)
from ..ops.reference import squeeze_time_reference
from ..errors import ExportError, InputError

INPUT_NAME = "CLIP"
OUTPUT_NAMES = ("LOGITS", "PROBS")
IMAGE_SIZE = 224
PRECISIONS = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}
CUSTOM_OP_NAMESPACE = "squeezetime"  # torch.ops.squeezetime.* (the kernels issue)


def _conv_with(conv: nn.Conv2d, weights: tuple[Tensor, Tensor]) -> nn.Conv2d:
    """A copy of ``conv`` (geometry, dtype, device) holding the folded (weight, bias), cast once."""
    weight, bias = weights
    folded = copy.deepcopy(conv)
    folded.weight = nn.Parameter(weight.to(conv.weight), requires_grad=False)
    folded.bias = nn.Parameter(bias.to(conv.weight), requires_grad=False)
    return folded


@torch.no_grad()
def _fold_conv_bn(conv: nn.Conv2d, bn: nn.BatchNorm2d) -> nn.Conv2d:
    return _conv_with(conv, fold_conv_bn(conv, bn))


@torch.no_grad()
def _fold_ctl_bn(ctl: ChannelTimeLearning, bn: nn.BatchNorm2d) -> None:
    """The batch norm after ``ctl`` into its temporal and short convolutions (``models.folding.fold_ctl_bn``)."""
    temporal, short = fold_ctl_bn(ctl, bn)
    ctl.temporal_conv = _conv_with(ctl.temporal_conv, temporal)
    ctl.spatial_conv.short_conv = _conv_with(ctl.spatial_conv.short_conv, short)


@torch.no_grad()
def _fix_pos_embeds(net: SqueezeTimeNet, image_size: int, num_frames: int) -> None:
    """Resize every positional embedding once to the feature size it meets at ``image_size``."""
    sizes: dict[InterTemporalObjectInteraction, tuple[int, int]] = {}
    hooks = [m.register_forward_pre_hook(lambda mod, args: sizes.__setitem__(mod, tuple(args[0].shape[-2:])))
             for m in net.modules() if isinstance(m, InterTemporalObjectInteraction)]
    try:
        channels = net.conv1.in_channels
        probe = torch.zeros(1, channels // num_frames, num_frames, image_size, image_size,
                            dtype=net.conv1.weight.dtype, device=net.conv1.weight.device)
        net(probe)
    finally:
        for h in hooks:
            h.remove()
    for ioi, size in sizes.items():
        ioi.pos_embed = nn.Parameter(resize_pos_embed(ioi.pos_embed, size).contiguous(), requires_grad=False)


@torch.no_grad()
def fold_for_inference(model: SqueezeTime, image_size: int = IMAGE_SIZE) -> SqueezeTime:
    """A copy of ``model`` with BatchNorm folded and positional embeddings fixed for ``image_size``."""
    model = copy.deepcopy(model).eval()
    net = model.backbone.net
    _fix_pos_embeds(net, image_size, model.num_frames)
    net.conv1, net.bn1 = _fold_conv_bn(net.conv1, net.bn1), nn.Identity()
    for m in list(net.modules()):
        if isinstance(m, TemporalGate):
            m[1], m[2] = _fold_conv_bn(m[1], m[2]), nn.Identity()
        elif isinstance(m, InterTemporalObjectInteraction):
            for c, b in ((0, 1), (3, 4)):
                m.glo_conv[c], m.glo_conv[b] = _fold_conv_bn(m.glo_conv[c], m.glo_conv[b]), nn.Identity()
        elif isinstance(m, Bottleneck):
            m.conv1, m.bn1 = _fold_conv_bn(m.conv1, m.bn1), nn.Identity()
            _fold_ctl_bn(m.conv2, m.bn2)
            m.bn2 = nn.Identity()
            m.conv3, m.bn3 = _fold_conv_bn(m.conv3, m.bn3), nn.Identity()
        elif isinstance(m, BasicBlock):
            _fold_ctl_bn(m.conv1, m.bn1)
            _fold_ctl_bn(m.conv2, m.bn2)
            m.bn1 = m.bn2 = nn.Identity()
        if isinstance(m, (Bottleneck, BasicBlock)):
            if isinstance(m.shortcut_conv, nn.Sequential):
                m.shortcut_conv = _fold_conv_bn(m.shortcut_conv[0], m.shortcut_conv[1])
            if m.stride != 1:
                m.downsample = _fold_conv_bn(m.downsample[0], m.downsample[1])
    remaining = [n for n, m in model.named_modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    if remaining:
        raise RuntimeError(f"BatchNorm left after folding: {remaining[:5]}")
    for p in model.parameters():
        p.requires_grad_(False)
    return model


def inference_model(model: SqueezeTime, image_size: int = IMAGE_SIZE) -> nn.Module:
    """The network to export: BN folded, positional embeddings fixed, plain ATen operators only.

    Not ``squeezetime.optimize``: its graph is tuned for eager CPU (a batch-1 branch, which a dynamic batch
    dimension cannot carry, and per-sample 1x1 weights as batched matmuls, which TensorRT would not fuse
    like a convolution). The folding here keeps convolutions as convolutions.
    """
    return fold_for_inference(model, image_size)


class ServingGraph(nn.Module):
    """uint8 CLIP (N, T, H, W, 3) -> LOGITS, PROBS (N, classes) float32; the graph that gets exported.

    The clip is normalised and folded by the ``squeeze_time`` operator: with ``fused_input`` the custom
    operator itself (``torch.ops.squeezetime.squeeze_time``, kept by torch.export through its fake kernel and
    replaced by its decomposition for exporters that cannot take it), otherwise its ATen definition
    (``ops.reference.squeeze_time_reference``, the same function as that decomposition), which every
    exporter takes. Both give the same float32 numbers. ``dtype`` is the compute precision: the clip is
    normalised in float32, then cast (fp16/bf16 graphs); the logits are cast back to float32 before the softmax.
    """

    def __init__(self, model: nn.Module, mean=MEAN, std=STD, dtype: torch.dtype = torch.float32,
                 fused_input: bool = False):
        super().__init__()
        self.fused_input = fused_input
        self.mean_list, self.std_list = [float(m) for m in mean], [float(s) for s in std]
        if getattr(model, "cls_head", True) is None:
            raise InputError("export needs a classification model (the AVA backbone has no head)")
        self.model = model.to(dtype).eval()
        self.dtype = dtype

    def forward(self, CLIP: Tensor) -> tuple[Tensor, Tensor]:  # noqa: N803 - the Triton input name
        if self.fused_input:
            x = torch.ops.squeezetime.squeeze_time(CLIP, self.mean_list, self.std_list)  # (N, 3T, H, W)
        else:
            x = squeeze_time_reference(CLIP, self.mean_list, self.std_list)  # the operator's decomposition
        n, t, h, w, c = CLIP.shape
        x = x.unflatten(1, (c, t)).to(self.dtype)  # (N, 3, T, H, W): channel c*T + t
        logits = self.model(x).to(torch.float32)
        return logits, F.softmax(logits, dim=-1)


def serving_graph(model: SqueezeTime, precision: str = "fp32", image_size: int = IMAGE_SIZE,
                  fold: bool = True, fused_input: bool = False) -> ServingGraph:
    """The exported graph for ``model``: folded (default) and wrapped with uint8 normalisation."""
    if precision not in PRECISIONS:
        raise InputError(f"precision must be one of {sorted(PRECISIONS)}, got {precision!r}")
    config = getattr(model, "config", {}) or {}
    net = inference_model(model, image_size) if fold else copy.deepcopy(model).eval()
    if fused_input and not _has_custom_op("squeeze_time"):
        raise ExportError("fused_input needs torch.ops.squeezetime.squeeze_time (reinstall with the extension: "
                           "`pip install --no-build-isolation .`, or `python setup.py build_ext --inplace` in a "
                           "source checkout)")
    return ServingGraph(net, config.get("mean", MEAN), config.get("std", STD), PRECISIONS[precision], fused_input)


def example_clip(batch: int = 2, num_frames: int = 16, image_size: int = IMAGE_SIZE, seed: int = 0) -> Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (batch, num_frames, image_size, image_size, 3), dtype=torch.uint8, generator=g)


def custom_ops_in(graph_module) -> list[str]:
    """Names of ``torch.ops.squeezetime.*`` operators called in an FX graph (ExportedProgram.graph_module)."""
    found = set()
    for node in graph_module.graph.nodes:
        if node.op == "call_function" and getattr(node.target, "namespace", None) == CUSTOM_OP_NAMESPACE:
            found.add(str(node.target))
    return sorted(found)


def _has_custom_op(name: str) -> bool:
    try:
        from .. import ops

        ops.extension_available()  # loads the library and its fake kernels, when built
    except Exception:  # noqa: BLE001
        return False
    return hasattr(torch.ops, CUSTOM_OP_NAMESPACE) and hasattr(getattr(torch.ops, CUSTOM_OP_NAMESPACE), name)


def custom_op_decompositions() -> dict:
    """ATen decompositions of the ``torch.ops.squeezetime`` operators that exist here (their pure-PyTorch
    references, written without tensor constants), for ``ExportedProgram.run_decompositions``: exporters that
    cannot take custom ops get plain ATen, and TensorRT sees one whole graph."""
    from ..ops.reference import ctl_combine_reference

    table = {}
    if _has_custom_op("squeeze_time"):
        table[torch.ops.squeezetime.squeeze_time.default] = squeeze_time_reference
    if _has_custom_op("ctl_combine"):
        table[torch.ops.squeezetime.ctl_combine.default] = \
            lambda temporal, short, glo, scale, shift, residual=None, relu=False: ctl_combine_reference(
                temporal, short, glo, scale, shift, residual, relu)
    return table
