"""video -> clip: decoding (PyAV), frame sampling (mmaction2 SampleFrames) and the official views."""
from ..errors import BudgetError, DecodeCancelled, StillImageError
from .decode import (DEFAULT_BUDGET, DecodeBudget, DecodeMeter, VideoReader, VideoSource, count_frames, decode_frames,
                     read_frames, read_video)
from .sampling import sample_frame_indices
from .views import VIEWS, View, get_view, sample_clips

__all__ = ["BudgetError", "DEFAULT_BUDGET", "DecodeBudget", "DecodeCancelled", "DecodeMeter", "StillImageError", "VIEWS",
           "VideoReader", "VideoSource", "View", "count_frames", "decode_frames", "get_view", "read_frames",
           "read_video", "sample_clips", "sample_frame_indices"]
