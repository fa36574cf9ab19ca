"""Which frames make a clip: mmaction2's ``SampleFrames`` in test mode (``out_of_bound_opt='loop'``)."""
from __future__ import annotations

import numpy as np


def test_clip_offsets(total_frames: int, clip_len: int, frame_interval: int, num_clips: int) -> np.ndarray:
    """Start frame of each clip: one centred clip, or ``num_clips`` spread evenly over the video."""
    span = (clip_len - 1) * frame_interval + 1
    max_offset = max(total_frames - span, 0)
    if num_clips > 1:
        return np.round(np.arange(num_clips) * (max_offset / (num_clips - 1))).astype(np.int64)
    return np.array([max_offset // 2], dtype=np.int64)


def sample_frame_indices(total_frames: int, clip_len: int = 16, frame_interval: int = 4,
                         num_clips: int = 1) -> np.ndarray:
    """(num_clips, clip_len) frame indices; videos shorter than a clip's span loop from the start."""
    if total_frames <= 0:
        raise ValueError("a video with no frames has no clips")
    offsets = test_clip_offsets(total_frames, clip_len, frame_interval, num_clips)
    indices = offsets[:, None] + np.arange(clip_len)[None, :] * frame_interval
    return np.mod(indices, total_frames)
