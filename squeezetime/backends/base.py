"""The backend interface and the one implementation for torch modules (eager network or optimised module)."""
from __future__ import annotations

from typing import Protocol

import torch
from torch import Tensor

from ..optimize import OptimizedSqueezeTime
from ..preprocess import as_uint8_clips, normalize_clip


class Backend(Protocol):
    name: str
    device: torch.device
    dtype: torch.dtype  # compute precision

    def logits(self, clips: Tensor) -> Tensor:
        """uint8 clips (N, T, H, W, 3), CPU -> float32 logits (N, classes), CPU."""


class TorchBackend:
    """A torch module that takes normalised clips (N, 3, T, H, W) of ``input_dtype`` and returns logits."""

    def __init__(self, name: str, module: torch.nn.Module, device: torch.device, dtype: torch.dtype,
                 input_dtype: torch.dtype, data_config):
        self.name, self.module, self.device, self.dtype = name, module, device, dtype
        self.input_dtype = input_dtype
        self.mean, self.std = data_config.mean, data_config.std

    @torch.inference_mode()
    def logits(self, clips: Tensor) -> Tensor:
        clips = clips.to(self.device)
        if isinstance(self.module, OptimizedSqueezeTime):  # not a torch.compile wrapper: that traces forward
            # uint8 frames straight into the network's input layout (one pass on CPU); checked as normalize_clip
            # checks them, so a bad shape or dtype gets the same error on every path
            clips = as_uint8_clips(clips, num_frames=None)
            return self.module.forward_frames(clips, self.mean, self.std).float().cpu()
        x = normalize_clip(clips, self.mean, self.std)  # the squeeze_time operator
        return self.module(x.to(self.input_dtype)).float().cpu()

    def __repr__(self) -> str:
        return f"TorchBackend({self.name}, {self.device}, {str(self.dtype).replace('torch.', '')})"
