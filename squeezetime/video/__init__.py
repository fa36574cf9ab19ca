"""video -> clip: decoding (PyAV), frame sampling (mmaction2 SampleFrames) and the official views."""
from .decode import (DEFAULT_BUDGET, BudgetError, DecodeBudget, DecodeMeter, VideoReader, VideoSource, count_frames,
                     decode_frames, read_frames, read_video)
from .sampling import sample_frame_indices
from .views import VIEWS, View, get_view, sample_clips

__all__ = ["BudgetError", "DEFAULT_BUDGET", "DecodeBudget", "DecodeMeter", "VIEWS", "VideoReader", "VideoSource",
           "View", "count_frames", "decode_frames", "get_view", "read_frames", "read_video", "sample_clips",
           "sample_frame_indices"]
