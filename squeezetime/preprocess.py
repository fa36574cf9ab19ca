"""clip -> tensor: uint8 RGB frames to the model's normalised (N, 3, T, H, W) float input."""
from __future__ import annotations

import numpy as np
import torch

from . import ops
from .errors import InputError
from .models.registry import MEAN, STD


def as_uint8_clips(frames, num_frames: int | None = 16, size: tuple[int, int] | None = None) -> torch.Tensor:
    """Validate a (N, T, H, W, 3) or (T, H, W, 3) uint8 RGB array/tensor and return it as (N, T, H, W, 3)."""
    if not isinstance(frames, torch.Tensor):
        array = np.asarray(frames)
        if array.dtype != np.uint8:  # before torch sees it: object or string arrays have no tensor form
            raise InputError(f"clips must be uint8 RGB frames, got {array.dtype}")
        frames = torch.from_numpy(array)
    clips = frames
    if clips.dtype != torch.uint8:
        raise InputError(f"clips must be uint8 RGB frames, got {clips.dtype}")
    if clips.dim() == 4:
        clips = clips.unsqueeze(0)
    if clips.dim() != 5 or clips.shape[-1] != 3:
        raise InputError(f"clips must be (N, T, H, W, 3) or (T, H, W, 3) RGB, got shape {tuple(frames.shape)}")
    if num_frames is not None and clips.shape[1] != num_frames:
        raise InputError(f"clips must have {num_frames} frames, got {clips.shape[1]}")
    if size is not None and tuple(clips.shape[2:4]) != tuple(size):
        raise InputError(f"clips must be {size[0]}x{size[1]}, got {clips.shape[2]}x{clips.shape[3]}")
    if clips.shape[0] == 0:
        raise InputError("no clips given (batch of 0)")
    return clips


def normalize_clip(frames, mean=MEAN, std=STD) -> torch.Tensor:
    """uint8 RGB (N, T, H, W, 3) or (T, H, W, 3) -> float32 (N, 3, T, H, W), ``(x - mean) / std`` per channel.

    A view of ``ops.squeeze_time`` (the fused kernel, or its reference without the extension): its
    (N, 3*T, H, W) output with channel c*T + t is this tensor's memory, contiguous.
    """
    clips = as_uint8_clips(frames, num_frames=None)
    n, t, h, w, _ = clips.shape
    return ops.squeeze_time(clips, mean, std).view(n, 3, t, h, w)
