"""Inputs that are not videos, for the refusal tests."""
from __future__ import annotations

import io

import av
import numpy as np


def png(height: int = 256, width: int = 320) -> bytes:
    """A still image (one PNG frame of noise): what an upload of a picture instead of a video looks like."""
    buf = io.BytesIO()
    with av.open(buf, mode="w", format="image2pipe") as out:
        stream = out.add_stream("png", rate=1)
        stream.height, stream.width, stream.pix_fmt = height, width, "rgb24"
        frame = np.random.default_rng(0).integers(0, 256, (height, width, 3), dtype=np.uint8)
        out.mux(stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")))
        out.mux(stream.encode())
    return buf.getvalue()
