"""Clip -> model-sized crops: the official validation (1x1) and test (10x3) views.

1x1: short side 256, centre crop 224, one clip (the val pipeline).
10x3: short side 224, three 224 crops along the long side, ten clips (the test pipeline).

Resizing is OpenCV's ``cv2.resize(INTER_LINEAR)`` on the uint8 RGB frame, what mmcv's ``imresize`` does in
the upstream pipeline, applied to each kept frame right after decoding (no full-resolution float copies).
Until issue 13 the frames were resized in float32 with PyTorch (``_resize_short_side_float``, half-pixel
centres, rounded): OpenCV's fixed-point weights give the same pixels but for rounding, measured on decoded
640x360 and 1080p frames: max difference 1 level, mean 0.022 (640x360 -> 256) and 0.006 (1080p -> 224);
1.0 and 1.8 ms per frame against 11.7 and 12.2 ms (docs/video.md).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from ..errors import InputError, VideoError
from .decode import DEFAULT_BUDGET, DecodeBudget, DecodeMeter, VideoReader, VideoSource, count_frames, decode_frames
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
    """Bilinear resize (mmcv's ``imresize``: cv2.INTER_LINEAR, half-pixel centres, no antialias) of an RGB
    uint8 frame so that its short side is ``short_side``."""
    h, w = frame.shape[:2]
    size = resized_shape(h, w, short_side)
    if size == (h, w):
        return frame
    import cv2  # here, not at import: environments that never decode (TensorRT, export venvs) lack OpenCV

    return cv2.resize(frame, (size[1], size[0]), interpolation=cv2.INTER_LINEAR)


def _resize_short_side_float(frame: np.ndarray, short_side: int) -> np.ndarray:
    """The resize before issue 13 (float32 PyTorch bilinear, rounded): within 1 level of ``resize_short_side``;
    kept for the benchmark's "before" and the tests that state the difference."""
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
    return _crop_clips(frames, np.asarray(indices), view)


def _crop_clips(frames, indices: np.ndarray, view: View) -> np.ndarray:
    """Crops written straight into the output array (no per-clip copies): ``frames[i]`` is frame ``i``
    (an array indexed by position or a dict by frame index)."""
    h, w = frames[int(indices[0, 0])].shape[:2]
    c = view.crop_size
    if min(h, w) < c:
        raise VideoError(f"frames of {h}x{w} are smaller than the {c}x{c} crop")
    boxes = crop_boxes(h, w, view)
    out = np.empty((len(indices) * len(boxes), indices.shape[1], c, c, 3), np.uint8)
    for n, clip in enumerate(indices):
        for k, (top, left) in enumerate(boxes):
            for t, i in enumerate(clip):
                out[n * len(boxes) + k, t] = frames[int(i)][top:top + c, left:left + c]
    return out


def sample_clips(video: VideoSource, views: str | View = "1x1", clip_len: int = 16,
                 frame_interval: int = 4, budget: DecodeBudget = DEFAULT_BUDGET,
                 meter: DecodeMeter | None = None) -> np.ndarray:
    """Encoded video -> uint8 clips (V, T, crop, crop, 3) ready for ``normalize_clip``; ``views`` is a name of
    the official table or a ``View``. Decodes only the frames the clips need (``VideoReader``); ``budget``
    bounds the decoding work (``BudgetError`` beyond it) and refuses still images from the frames the clips
    decoded. ``meter``: where the decoded frames and CPU seconds are counted (a new one when None)."""
    view = views if isinstance(views, View) else get_view(views)

    def resize(frame: np.ndarray) -> np.ndarray:
        return resize_short_side(frame, view.short_side)

    with VideoReader(video, budget, meter) as reader:
        for _ in range(2):  # a second round only when a linear decode disagrees with the frame table's count
            total = reader.num_frames
            indices = sample_frame_indices(total, clip_len, frame_interval, view.num_clips)
            frames = reader.frames(np.unique(indices), resize)
            if reader.num_frames == total:
                break
        else:
            raise VideoError(f"{reader.name}: video frames could not be decoded consistently (corrupt stream)")
        reader.check_motion(frames)
    return _assemble(frames, indices, view)


def _assemble(frames: dict[int, np.ndarray], indices: np.ndarray, view: View) -> np.ndarray:
    return _crop_clips(frames, indices, view)


def sample_clips_full_decode(video: VideoSource, views: str | View = "1x1", clip_len: int = 16,
                             frame_interval: int = 4, budget: DecodeBudget = DEFAULT_BUDGET) -> np.ndarray:
    """``sample_clips`` before issue 13 (two demuxes, every frame decoded, float resize): the benchmark's
    "before"; not used by the pipeline."""
    view = views if isinstance(views, View) else get_view(views)
    total = count_frames(video, budget)
    for _ in range(2):
        indices = sample_frame_indices(total, clip_len, frame_interval, view.num_clips)
        frames, decoded = decode_frames(video, np.unique(indices),
                                        lambda f: _resize_short_side_float(f, view.short_side), budget)
        if all(int(i) in frames for i in np.unique(indices)):
            break
        total = decoded
    else:
        raise VideoError("video frames could not be decoded consistently (corrupt stream)")
    return _assemble(frames, indices, view)
