"""Named SqueezeTime configurations (the official hyper-parameters) and the one ``create_model`` entry point."""
from __future__ import annotations

from dataclasses import asdict, dataclass, field, replace
from importlib import resources

from ..data_config import MEAN, STD, DataConfig
from ..errors import InputError
from .squeezetime import I2DHead, SqueezeTime, SqueezeTimeBackbone



@dataclass(frozen=True)
class ModelConfig:
    depth: int = 50
    widen_factor: float = 1.0
    num_frames: int = 16
    frame_interval: int = 4
    spatial_stride: tuple[int, ...] = (1, 2, 2, 2)
    pos_dim: tuple[int, ...] = (56, 28, 14, 7)
    num_classes: int | None = 400  # None: backbone only (AVA features)
    labels: str | None = "k400"  # class-name list shipped in squeezetime/labels/
    mean: tuple[float, ...] = MEAN
    std: tuple[float, ...] = STD
    extra: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        return asdict(self)


CONFIGS: dict[str, ModelConfig] = {
    "k400": ModelConfig(num_classes=400, labels="k400"),
    "k600": ModelConfig(num_classes=600, labels="k600"),
    "hmdb51": ModelConfig(num_classes=51, labels="hmdb51"),
    # AVA 2.1 detection backbone: stage 4 keeps stride 1, features as (N, C/16, 16, H, W).
    "ava": ModelConfig(spatial_stride=(1, 2, 2, 1), num_classes=None, labels=None),
}


def list_models() -> list[str]:
    return sorted(CONFIGS)


def class_names(labels: str) -> list[str]:
    """Class names shipped with the package (k400, k600, hmdb51), line i = class i."""
    text = resources.files("squeezetime.labels").joinpath(f"{labels}.txt").read_text(encoding="utf-8")
    return [line.strip() for line in text.splitlines() if line.strip()]


def build(config: ModelConfig, class_list: list[str] | None = None) -> SqueezeTime:
    backbone = SqueezeTimeBackbone(
        depth=config.depth,
        widen_factor=config.widen_factor,
        input_channels=3 * config.num_frames,
        spatial_stride=config.spatial_stride,
        pos_dim=config.pos_dim,
        time_steps_out=config.num_frames if config.num_classes is None else None,
    )
    head = None
    if config.num_classes is not None:
        head = I2DHead(config.num_classes, backbone.net.out_channels)
        if class_list is None and config.labels and len(class_names(config.labels)) == config.num_classes:
            class_list = class_names(config.labels)
    data_config = DataConfig.for_model_config(config.to_dict())
    model = SqueezeTime(backbone, head, class_names=class_list, config=config.to_dict(), data_config=data_config)
    return model.eval()


def create_model(arch: str = "k400", *, widen_factor: float = 1.0, num_classes: int | None = None,
                 class_names: list[str] | None = None, **overrides) -> SqueezeTime:
    """A SqueezeTime model of a named configuration, randomly initialised, in eval mode.

    ``overrides`` may change any ModelConfig field (depth, pos_dim, spatial_stride, num_frames...).
    """
    if arch not in CONFIGS:
        raise InputError(f"unknown arch {arch!r}; choose one of {list_models()}")
    config = replace(CONFIGS[arch], widen_factor=widen_factor, **overrides)
    if num_classes is not None:
        if config.num_classes is None:
            raise InputError(f"arch {arch!r} has no classification head")
        config = replace(config, num_classes=num_classes)
    if class_names is not None:
        config = replace(config, labels=None)
    return build(config, class_names)
