"""Video file (path or bytes) -> RGB frames, with PyAV. Decodes only the frames a clip needs."""
from __future__ import annotations

import io
import os
from typing import Callable, Iterable

import av
import numpy as np

from ..errors import VideoError

VideoSource = str | os.PathLike | bytes | bytearray | memoryview


def _open(source: VideoSource):
    name = "<bytes>"
    if isinstance(source, (bytes, bytearray, memoryview)):
        if len(source) == 0:
            raise VideoError("empty video: 0 bytes")
        stream = io.BytesIO(bytes(source))
    else:
        name = os.fspath(source)
        if not os.path.isfile(name):
            raise VideoError(f"{name}: no such file")
        if os.path.getsize(name) == 0:
            raise VideoError(f"{name}: empty file (0 bytes)")
        stream = name
    try:
        container = av.open(stream, mode="r")
    except (av.FFmpegError, ValueError, OSError) as e:
        raise VideoError(f"{name}: not a readable video ({_reason(e)})") from e
    if not container.streams.video:
        container.close()
        raise VideoError(f"{name}: no video stream (audio-only or data file)")
    return container, name


def _reason(e: Exception) -> str:
    text = (getattr(e, "strerror", None) or str(e)).strip()
    return text.splitlines()[0] if text else type(e).__name__


def count_frames(source: VideoSource) -> int:
    """Number of video frames, counted from the demuxed packets (no decoding)."""
    container, name = _open(source)
    try:
        return sum(1 for p in container.demux(container.streams.video[0]) if p.size > 0)
    except av.FFmpegError as e:
        raise VideoError(f"{name}: corrupt or truncated video ({_reason(e)})") from e
    finally:
        container.close()


def decode_frames(source: VideoSource, wanted: Iterable[int] | None = None,
                  transform: Callable[[np.ndarray], np.ndarray] | None = None) -> tuple[dict[int, np.ndarray], int]:
    """Decode the video once; return ({index: RGB frame (H, W, 3) uint8}, frames decoded).

    ``wanted`` limits which frames are kept (all when None); ``transform`` is applied to each kept frame
    (e.g. resizing) so that only small frames stay in memory.
    """
    keep = None if wanted is None else set(int(i) for i in wanted)
    container, name = _open(source)
    frames: dict[int, np.ndarray] = {}
    index = 0
    try:
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        for frame in container.decode(stream):
            if keep is None or index in keep:
                rgb = frame.to_ndarray(format="rgb24")
                frames[index] = transform(rgb) if transform else rgb
            index += 1
    except av.FFmpegError as e:
        raise VideoError(f"{name}: corrupt or truncated video after {index} frames ({_reason(e)})") from e
    finally:
        container.close()
    if index == 0:
        raise VideoError(f"{name}: video stream has no decodable frames")
    return frames, index


def read_video(source: VideoSource) -> np.ndarray:
    """All frames as (T, H, W, 3) uint8 RGB."""
    frames, total = decode_frames(source)
    return np.stack([frames[i] for i in range(total)])
