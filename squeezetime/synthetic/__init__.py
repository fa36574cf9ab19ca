"""Synthetic, temporally-ordered videos and the demo model trained on them."""
from .generator import CLASSES, REVERSED, encode_video, make_clip, make_dataset, make_video, random_motion, render

__all__ = ["CLASSES", "REVERSED", "encode_video", "make_clip", "make_dataset", "make_video", "random_motion",
           "render"]
