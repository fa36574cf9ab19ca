"""SqueezeTime (Zhai et al., arXiv 2405.08344), bit-faithful to the official network.

The clip's time axis is squeezed into channels: a clip (N, 3, T, H, W) becomes an image
(N, 3*T, H, W) with channel index c*T + t, and a 2D ResNet whose 3x3 convolutions are replaced by
Channel-Time Learning (CTL) modules restores temporal reasoning. Reading order follows the paper:

    TemporalGate -> InterTemporalObjectInteraction (IOI) -> ChannelTimeLearning (CTL)
    -> BasicBlock / Bottleneck (CTL blocks) -> SqueezeTimeNet (stem + 4 stages)
    -> I2DHead -> SqueezeTime (backbone + head)

Module and attribute names (``param_conv``, ``glo_conv``, ``backbone.net``, ``cls_head.fc_cls``...)
are those of the official code so that released checkpoints load key for key.
"""
from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..errors import InputError

GLOBAL_CHANNELS = 16  # width of the IOI global branch and of its positional embedding (fixed upstream)


def squeeze_time(clip: Tensor) -> Tensor:
    """(N, C, T, H, W) -> (N, C*T, H, W): channel index c*T + t, as the official ``x.view``."""
    n, c, t, h, w = clip.shape
    return clip.reshape(n, c * t, h, w)


def resize_pos_embed(pos_embed: Tensor, size: tuple[int, int]) -> Tensor:
    """Positional embeddings follow the feature map's size (bilinear, align_corners=True, as upstream)."""
    if tuple(pos_embed.shape[-2:]) == tuple(size):
        return pos_embed
    return F.interpolate(pos_embed, size=size, mode="bilinear", align_corners=True)


class TemporalGate(nn.Sequential):
    """Temporal-importance gate: a per-sample, per-channel weight in (0, 1).

    Since channels carry time, weighting channels is weighting (and mixing) time steps.
    Indices 1, 2, 4 hold weights, matching the official ``param_conv`` keys.
    """

    def __init__(self, channels: int):
        super().__init__(
            nn.AdaptiveAvgPool2d((1, 1)),
            nn.Conv2d(channels, channels, 1, bias=False),
            nn.BatchNorm2d(channels),
            nn.ReLU(inplace=True),
            nn.Conv2d(channels, channels, 1, bias=False),
            nn.Sigmoid(),
        )


class InterTemporalObjectInteraction(nn.Module):
    """IOI module (``SpatialConv`` upstream): a 3x3 short branch modulated by a global attention map.

    The global branch sees the gated input, adds a learnt positional embedding after its first
    conv/BN/ReLU and ends in a sigmoid; the result multiplies the short branch.
    """

    def __init__(self, dim_in: int, dim_out: int, pos_dim: int = 7):
        super().__init__()
        g = GLOBAL_CHANNELS
        self.short_conv = nn.Conv2d(dim_in, dim_out, kernel_size=3, padding=1)
        self.glo_conv = nn.Sequential(
            nn.Conv2d(dim_in, g, kernel_size=3, padding=1),
            nn.BatchNorm2d(g),
            nn.ReLU(inplace=True),
            # the positional embedding is added here, before index 3
            nn.Conv2d(g, g, kernel_size=7, padding=3),
            nn.BatchNorm2d(g),
            nn.ReLU(inplace=True),
            nn.Conv2d(g, dim_out, kernel_size=3, padding=1),
            nn.Sigmoid(),
        )
        self.pos_embed = nn.Parameter(torch.zeros(1, g, pos_dim, pos_dim))
        nn.init.kaiming_normal_(self.pos_embed, mode="fan_out", nonlinearity="relu")

    def attention(self, gated: Tensor) -> Tensor:
        """The global branch up to (not including) its sigmoid: the logits of the attention map."""
        x = self.glo_conv[2](self.glo_conv[1](self.glo_conv[0](gated)))
        x = x + resize_pos_embed(self.pos_embed, x.shape[-2:])
        x = self.glo_conv[5](self.glo_conv[4](self.glo_conv[3](x)))
        return self.glo_conv[6](x)

    def forward(self, x: Tensor, gate: Tensor) -> Tensor:
        return self.short_conv(x) * torch.sigmoid(self.attention(x * gate))


class ChannelTimeLearning(nn.Module):
    """CTL module (``Conv2d`` upstream): gated 1x1 temporal mixing plus object interaction.

    y = temporal_conv(gate * x) + short_conv(x) * sigmoid(global(gate * x))
    """

    def __init__(self, in_channels: int, out_channels: int, pos_dim: int = 7):
        super().__init__()
        self.param_conv = TemporalGate(in_channels)
        self.temporal_conv = nn.Conv2d(in_channels, out_channels, kernel_size=1, bias=False)
        self.spatial_conv = InterTemporalObjectInteraction(in_channels, out_channels, pos_dim)

    def forward(self, x: Tensor) -> Tensor:
        gate = self.param_conv(x)
        return self.temporal_conv(gate * x) + self.spatial_conv(x, gate)


def conv1x1(in_planes: int, out_planes: int) -> nn.Conv2d:
    return nn.Conv2d(in_planes, out_planes, kernel_size=1, bias=False)


def strided_downsample(planes: int) -> nn.Sequential:
    """Blocks that reduce resolution do it first, with a depthwise 2x2/2 conv + BN (with bias)."""
    return nn.Sequential(nn.Conv2d(planes, planes, kernel_size=2, stride=2, groups=planes), nn.BatchNorm2d(planes))


class CTLBlock(nn.Module):
    """Shared residual wiring of the two CTL blocks: downsample, body, shortcut, add, ReLU."""

    expansion = 1

    def _wire_residual(self, in_planes: int, stride: int, shortcut_conv: nn.Module | None) -> None:
        """Called after the body's layers so that state-dict keys keep the official order."""
        self.relu = nn.ReLU(inplace=True)
        self.stride = stride
        self.shortcut_conv = shortcut_conv
        if stride != 1:
            self.downsample = strided_downsample(in_planes)

    def body(self, x: Tensor) -> Tensor:
        raise NotImplementedError

    def forward(self, x: Tensor) -> Tensor:
        if self.stride != 1:
            x = self.downsample(x)
        residual = x if self.shortcut_conv is None else self.shortcut_conv(x)
        return self.relu(self.body(x) + residual)


class BasicBlock(CTLBlock):
    """Two CTL modules. Upstream gives the first one the default pos_dim of 7 (kept for key parity)."""

    expansion = 1

    def __init__(self, in_planes: int, planes: int, stride: int = 1, shortcut_conv=None, pos_dim: int = 7):
        super().__init__()
        self.conv1 = ChannelTimeLearning(in_planes, planes)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = ChannelTimeLearning(planes, planes, pos_dim=pos_dim)
        self.bn2 = nn.BatchNorm2d(planes)
        self._wire_residual(in_planes, stride, shortcut_conv)

    def body(self, x: Tensor) -> Tensor:
        out = self.relu(self.bn1(self.conv1(x)))
        return self.bn2(self.conv2(out))


class Bottleneck(CTLBlock):
    """1x1 reduce -> CTL -> 1x1 expand, the ResNet-50 bottleneck with its 3x3 conv replaced by CTL."""

    expansion = 4

    def __init__(self, in_planes: int, planes: int, stride: int = 1, shortcut_conv=None, pos_dim: int = 7):
        super().__init__()
        self.conv1 = conv1x1(in_planes, planes)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = ChannelTimeLearning(planes, planes, pos_dim=pos_dim)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv3 = conv1x1(planes, planes * self.expansion)
        self.bn3 = nn.BatchNorm2d(planes * self.expansion)
        self._wire_residual(in_planes, stride, shortcut_conv)

    def body(self, x: Tensor) -> Tensor:
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        return self.bn3(self.conv3(out))


DEPTHS: dict[int, tuple[type[CTLBlock], tuple[int, int, int, int]]] = {
    10: (BasicBlock, (1, 1, 1, 1)),
    18: (BasicBlock, (2, 2, 2, 2)),
    34: (BasicBlock, (3, 4, 6, 3)),
    50: (Bottleneck, (3, 4, 6, 3)),
    101: (Bottleneck, (3, 4, 23, 3)),
    152: (Bottleneck, (3, 8, 36, 3)),
    200: (Bottleneck, (3, 24, 36, 3)),
}
BASE_WIDTHS = (64, 128, 256, 512)


class SqueezeTimeNet(nn.Module):
    """The 2D ResNet over squeezed clips (``ResNet`` upstream): 5x5/2 stem, max-pool, four CTL stages.

    ``time_steps_out`` set (AVA) reshapes the features to (N, C/T, T, H, W) for a RoI head.
    """

    def __init__(
        self,
        depth: int = 50,
        widen_factor: float = 1.0,
        input_channels: int = 48,
        spatial_stride: Sequence[int] = (1, 2, 2, 2),
        pos_dim: Sequence[int] = (56, 28, 14, 7),
        time_steps_out: int | None = None,
    ):
        super().__init__()
        if depth not in DEPTHS:
            raise InputError(f"depth must be one of {sorted(DEPTHS)}, got {depth}")
        block, layers = DEPTHS[depth]
        widths = [int(w * widen_factor) for w in BASE_WIDTHS]
        self.time_steps_out = time_steps_out
        self.in_planes = widths[0]
        self.conv1 = nn.Conv2d(input_channels, widths[0], kernel_size=5, stride=2, padding=2, bias=False)
        self.bn1 = nn.BatchNorm2d(widths[0])
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)
        self.layer1 = self._make_stage(block, widths[0], layers[0], spatial_stride[0], pos_dim[0])
        self.layer2 = self._make_stage(block, widths[1], layers[1], spatial_stride[1], pos_dim[1])
        self.layer3 = self._make_stage(block, widths[2], layers[2], spatial_stride[2], pos_dim[2])
        self.layer4 = self._make_stage(block, widths[3], layers[3], spatial_stride[3], pos_dim[3])
        self.out_channels = self.in_planes
        self._init_weights()

    def _make_stage(self, block, planes: int, blocks: int, stride: int, pos_dim: int) -> nn.Sequential:
        out_planes = planes * block.expansion
        shortcut = None
        if self.in_planes != out_planes:
            shortcut = nn.Sequential(conv1x1(self.in_planes, out_planes), nn.BatchNorm2d(out_planes))
        stage = [block(self.in_planes, planes, stride=stride, shortcut_conv=shortcut, pos_dim=pos_dim)]
        self.in_planes = out_planes
        stage += [block(out_planes, planes, pos_dim=pos_dim) for _ in range(1, blocks)]
        return nn.Sequential(*stage)

    def _init_weights(self) -> None:
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)

    def stem(self, x: Tensor) -> Tensor:
        return self.maxpool(self.relu(self.bn1(self.conv1(x))))

    def forward(self, clip: Tensor) -> Tensor:
        x = self.stem(squeeze_time(clip))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        if self.time_steps_out:
            n, _, h, w = x.shape
            x = x.reshape(n, -1, self.time_steps_out, h, w)
        return x


class SqueezeTimeBackbone(nn.Module):
    """The mmaction2 backbone wrapper: holds the network as ``net`` (checkpoint keys ``backbone.net.*``)."""

    def __init__(self, **net_kwargs):
        super().__init__()
        self.net = SqueezeTimeNet(**net_kwargs)

    def forward(self, clip: Tensor) -> Tensor:
        return self.net(clip)


class I2DHead(nn.Module):
    """Global average pool -> dropout (inactive in eval) -> linear classifier."""

    def __init__(self, num_classes: int, in_channels: int, dropout_ratio: float = 0.5):
        super().__init__()
        self.avg_pool = nn.AdaptiveAvgPool2d((1, 1))
        self.dropout = nn.Dropout(p=dropout_ratio) if dropout_ratio else nn.Identity()
        self.fc_cls = nn.Linear(in_channels, num_classes)
        nn.init.normal_(self.fc_cls.weight, std=0.01)
        nn.init.zeros_(self.fc_cls.bias)

    def pre_logits(self, features: Tensor) -> Tensor:
        return self.dropout(self.avg_pool(features)).flatten(1)

    def forward(self, features: Tensor) -> Tensor:
        return self.fc_cls(self.pre_logits(features))


class SqueezeTime(nn.Module):
    """Recognizer: backbone + optional classification head (none for the AVA feature extractor).

    forward: normalised clips (N, 3, T, H, W) float -> logits (N, classes), or features without a head.
    ``forward_features`` / ``forward_head`` / ``get_classifier`` / ``reset_classifier`` follow timm, so a user
    can put their own classes on the network. ``data_config`` (a ``squeezetime.DataConfig``, set by the registry
    and by checkpoints) says what input the weights expect.
    """

    def __init__(self, backbone: SqueezeTimeBackbone, cls_head: I2DHead | None = None,
                 class_names: Sequence[str] | None = None, config: dict | None = None, data_config=None):
        super().__init__()
        self.backbone = backbone
        self.cls_head = cls_head
        self.class_names = list(class_names) if class_names is not None else None
        self.config = dict(config or {})
        self.data_config = data_config

    @property
    def num_frames(self) -> int:
        return self.config.get("num_frames", 16)

    @property
    def num_classes(self) -> int:
        return 0 if self.cls_head is None else self.cls_head.fc_cls.out_features

    def forward_features(self, clip: Tensor) -> Tensor:
        """Backbone features (N, C, h, w) (AVA: (N, C/T, T, h, w))."""
        return self.backbone(clip)

    def forward_head(self, features: Tensor, pre_logits: bool = False) -> Tensor:
        """Pooled features (``pre_logits``) or class logits; features pass through when there is no head."""
        if self.cls_head is None:
            return features
        return self.cls_head.pre_logits(features) if pre_logits else self.cls_head(features)

    def get_classifier(self) -> nn.Module | None:
        return None if self.cls_head is None else self.cls_head.fc_cls

    def reset_classifier(self, num_classes: int, class_names: Sequence[str] | None = None) -> None:
        """A fresh linear head of ``num_classes`` (0 removes it: the model returns features)."""
        if class_names is not None and len(class_names) != num_classes:
            raise InputError(f"{len(class_names)} class names for {num_classes} classes")
        self.cls_head = I2DHead(num_classes, self.backbone.net.out_channels) if num_classes > 0 else None
        self.class_names = list(class_names) if class_names is not None else None
        self.config["num_classes"] = num_classes or None
        self.config["labels"] = None

    def forward(self, clip: Tensor) -> Tensor:
        return self.forward_head(self.forward_features(clip))
