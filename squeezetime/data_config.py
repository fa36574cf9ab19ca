"""What a model expects of its input, carried with its weights (torchvision's weights-carry-their-transforms,
timm's ``pretrained_cfg``): frames per clip, the sampling stride, the views table and the normalisation.

    DataConfig()                              # the official SqueezeTime values
    DataConfig.from_dict(saved)               # what ``save_checkpoint`` wrote
    config.view("10x3")                       # View(num_clips=10, short_side=224, crop_size=224, three_crop=True)
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field, replace
from typing import Mapping

from .errors import CheckpointError, InputError
from .video.views import VIEWS, View

MEAN = (123.675, 116.28, 103.53)  # RGB, 0-255 (official ActionDataPreprocessor)
STD = (58.395, 57.12, 57.375)


@dataclass(frozen=True)
class DataConfig:
    num_frames: int = 16          # SampleFrames clip_len
    frame_interval: int = 4       # SampleFrames frame_interval
    views: Mapping[str, View] = field(default_factory=lambda: dict(VIEWS))
    default_views: str = "1x1"
    mean: tuple[float, ...] = MEAN
    std: tuple[float, ...] = STD

    def __post_init__(self):
        if self.num_frames < 1 or self.frame_interval < 1:
            raise InputError(f"num_frames and frame_interval must be >= 1, got {self.num_frames}, "
                             f"{self.frame_interval}")
        if self.default_views not in self.views:
            raise InputError(f"default views {self.default_views!r} is not in the views table {sorted(self.views)}")
        if len({v.crop_size for v in self.views.values()}) != 1:
            raise InputError("all views of a model must have one crop size (the network's input size)")
        if len(self.mean) != 3 or len(self.std) != 3 or min(self.std) <= 0:
            raise InputError("mean and std must hold 3 values (RGB), std > 0")

    @property
    def crop_size(self) -> int:
        """The network's input height and width (every view crops to it)."""
        return next(iter(self.views.values())).crop_size

    def view(self, name: str | None = None) -> View:
        """The named view (the default one for None); an unknown name is an ``InputError``."""
        name = self.default_views if name is None else name
        if not isinstance(name, str) or name not in self.views:
            raise InputError(f"unknown views {name!a}; choose one of {sorted(self.views)}")
        return self.views[name]

    def clips_per_video(self, name: str | None = None) -> int:
        view = self.view(name)
        return view.num_clips * (3 if view.three_crop else 1)

    def to_dict(self) -> dict:
        out = asdict(self)
        out["views"] = {name: asdict(v) for name, v in self.views.items()}
        out["mean"], out["std"] = list(self.mean), list(self.std)
        return out

    @classmethod
    def from_dict(cls, data: Mapping) -> "DataConfig":
        """The inverse of ``to_dict``; missing fields take the official values, unknown ones are refused."""
        known = {f for f in cls.__dataclass_fields__}
        unknown = sorted(set(data) - known)
        if unknown:
            raise CheckpointError(f"data config has unknown fields {unknown}")
        values = dict(data)
        try:
            if "views" in values:
                values["views"] = {str(k): View(**v) for k, v in dict(values["views"]).items()}
            for key in ("mean", "std"):
                if key in values:
                    values[key] = tuple(float(x) for x in values[key])
            return cls(**values)
        except (TypeError, ValueError) as e:
            raise CheckpointError(f"invalid data config: {e}") from e

    @classmethod
    def for_model_config(cls, config: Mapping) -> "DataConfig":
        """The official pipeline for a model of this ``ModelConfig`` dict (frames, interval, mean, std)."""
        base = cls()
        return replace(base, num_frames=int(config.get("num_frames", base.num_frames)),
                       frame_interval=int(config.get("frame_interval", base.frame_interval)),
                       mean=tuple(config.get("mean", base.mean)), std=tuple(config.get("std", base.std)))


__all__ = ["DataConfig", "MEAN", "STD"]
