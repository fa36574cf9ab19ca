"""Clip -> model-sized crops: the official validation (1x1) and test (10x3) views.

1x1: short side 256, centre crop 224, one clip (the val pipeline).
10x3: short side 224, three 224 crops along the long side, ten clips (the test pipeline).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from ..errors import InputError, VideoError
from .decode import DEFAULT_BUDGET, DecodeBudget, VideoSource, count_frames, decode_frames
from .sampling import sample_frame_indices


@dataclass(frozen=True)
class View:
    num_clips: int
    short_side: int
    crop_size: int
    three_crop: bool


VIEWS = {
    "1x1": View(num_clips=1, short_side=256, crop_size=224, three_crop=False),
    "10x3": View(num_clips=10, short_side=224, crop_size=224, three_crop=True),
}


def get_view(name: str) -> View:
    if name not in VIEWS:
        raise InputError(f"unknown views {name!a}; choose one of {sorted(VIEWS)}")
    return VIEWS[name]


def resized_shape(height: int, width: int, short_side: int) -> tuple[int, int]:
    """mmcv's keep-ratio rescale: the short side becomes ``short_side``, sizes rounded half up."""
    scale = short_side / min(height, width)
    return int(height * scale + 0.5), int(width * scale + 0.5)


def resize_short_side(frame: np.ndarray, short_side: int) -> np.ndarray:
    """Bilinear resize (half-pixel centres, no antialias, like cv2.INTER_LINEAR) of an RGB uint8 frame."""
    h, w = frame.shape[:2]
    size = resized_shape(h, w, short_side)
    if size == (h, w):
        return frame
    x = torch.from_numpy(np.ascontiguousarray(frame)).permute(2, 0, 1)[None].float()
    y = F.interpolate(x, size=size, mode="bilinear", align_corners=False)
    return y[0].round_().clamp_(0, 255).to(torch.uint8).permute(1, 2, 0).numpy()


def crop_boxes(height: int, width: int, view: View) -> list[tuple[int, int]]:
    """Top-left corners of the view's crops (mmaction2 CenterCrop / ThreeCrop)."""
    c = view.crop_size
    if not view.three_crop:
        return [((height - c) // 2, (width - c) // 2)]
    if width >= height:
        step = (width - c) // 2
        return [((height - c) // 2, 0), ((height - c) // 2, 2 * step), ((height - c) // 2, step)]
    step = (height - c) // 2
    return [(0, (width - c) // 2), (2 * step, (width - c) // 2), (step, (width - c) // 2)]


def clips_from_frames(frames: np.ndarray, indices: np.ndarray, view: View) -> np.ndarray:
    """(T_total, H, W, 3) resized frames + (clips, T) indices -> (clips*crops, T, crop, crop, 3) uint8."""
    h, w = frames.shape[1:3]
    c = view.crop_size
    if min(h, w) < c:
        raise VideoError(f"frames of {h}x{w} are smaller than the {c}x{c} crop")
    out = [frames[clip][:, top:top + c, left:left + c] for clip in indices for top, left in crop_boxes(h, w, view)]
    return np.ascontiguousarray(np.stack(out))


def sample_clips(video: VideoSource, views: str | View = "1x1", clip_len: int = 16,
                 frame_interval: int = 4, budget: DecodeBudget = DEFAULT_BUDGET) -> np.ndarray:
    """Encoded video -> uint8 clips (V, T, crop, crop, 3) ready for ``normalize_clip``; ``views`` is a name of
    the official table or a ``View``. ``budget`` bounds the decoding work (``BudgetError`` beyond it)."""
    view = views if isinstance(views, View) else get_view(views)
    total = count_frames(video, budget)
    if total == 0:
        raise VideoError("video stream has no frames")
    for _ in range(2):  # a second pass only when the decoder disagrees with the container's packet count
        indices = sample_frame_indices(total, clip_len, frame_interval, view.num_clips)
        frames, decoded = decode_frames(video, np.unique(indices), lambda f: resize_short_side(f, view.short_side),
                                        budget)
        if all(int(i) in frames for i in np.unique(indices)):
            break
        total = decoded
    else:
        raise VideoError("video frames could not be decoded consistently (corrupt stream)")
    lookup = {i: n for n, i in enumerate(sorted(frames))}
    stacked = np.stack([frames[i] for i in sorted(frames)])
    return clips_from_frames(stacked, np.vectorize(lookup.get)(indices), view)
