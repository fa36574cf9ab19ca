"""Video file (path or bytes) -> RGB frames, with PyAV, within a per-video budget.

Every video is untrusted: ``DecodeBudget`` bounds the pixels of a frame, the frames scanned and the seconds
spent, and refuses still images (a PNG or JPEG is not a video); going over raises ``BudgetError`` naming the
limit and the setting that raises it. The same budget applies on every path (Python, CLI, Triton, TorchServe).
"""
from __future__ import annotations

import io
import os
import time
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Callable, Iterable

import av
import numpy as np

from ..errors import InputError, SqueezeTimeError, VideoError

VideoSource = str | os.PathLike | bytes | bytearray | memoryview
STILL_IMAGE_FORMATS = {"image2", "png_pipe", "jpeg_pipe", "webp_pipe", "bmp_pipe", "tiff_pipe", "gif", "gif_pipe",
                       "apng", "jpegxl_pipe", "qoi_pipe", "pam_pipe", "ppm_pipe", "pgm_pipe", "psd_pipe", "svg_pipe"}


class BudgetError(VideoError):
    """A video over a decode budget (too many pixels, frames or seconds) or a still image."""


class DecodeCancelled(SqueezeTimeError):
    """Decoding was stopped because the caller's ``should_stop`` said so (e.g. the request was cancelled)."""


# The caller's "stop now?" check of the decode running in this thread (``stop_when``); None: never stop.
_should_stop: ContextVar[Callable[[], bool] | None] = ContextVar("squeezetime_decode_should_stop", default=None)


@contextmanager
def stop_when(should_stop: Callable[[], bool] | None):
    """Decodes run inside the block call ``should_stop()`` every few frames (and once before opening a video)
    and raise ``DecodeCancelled`` when it returns True. Per thread (a context variable); None: no check."""
    token = _should_stop.set(should_stop)
    try:
        yield
    finally:
        _should_stop.reset(token)


def check_stop(name: str = "<video>") -> None:
    """Raise ``DecodeCancelled`` when the ``stop_when`` check of this thread says stop."""
    should_stop = _should_stop.get()
    if should_stop is not None and should_stop():
        raise DecodeCancelled(f"{name}: decoding stopped: the request was cancelled")


@dataclass(frozen=True)
class DecodeBudget:
    max_pixels: int = 4096 * 2304       # per frame: 4K (DCI and UHD) passes, 8K does not
    max_frames: int = 200_000           # frames scanned in one video (about 2 h at 25 fps)
    max_seconds: float = 120.0          # wall time to decode one video
    allow_still_images: bool = False    # a one-frame image file (PNG, JPEG...) as a one-frame video

    def __post_init__(self):
        if self.max_pixels < 1 or self.max_frames < 1 or not self.max_seconds > 0:
            raise InputError("decode budget limits must be positive")

    def check_frame_size(self, name: str, height: int, width: int) -> None:
        if height * width > self.max_pixels:
            raise BudgetError(f"{name}: frames of {width}x{height} ({height * width / 1e6:.1f} Mpixels) are over "
                              f"the limit of {self.max_pixels / 1e6:.1f} Mpixels (setting max_pixels)")

    def check_frames(self, name: str, frames: int) -> None:
        if frames > self.max_frames:
            raise BudgetError(f"{name}: more than {self.max_frames} frames (setting max_frames)")

    def check_time(self, name: str, started: float) -> None:
        if time.monotonic() - started > self.max_seconds:
            raise BudgetError(f"{name}: decoding took over {self.max_seconds:g} s (setting max_decode_seconds)")


DEFAULT_BUDGET = DecodeBudget()


def _open(source: VideoSource, budget: DecodeBudget = DEFAULT_BUDGET):
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
    check_stop(name)
    try:
        container = av.open(stream, mode="r")
    except (av.FFmpegError, ValueError, OSError) as e:
        raise VideoError(f"{name}: not a readable video ({_reason(e)})") from e
    if not container.streams.video:
        container.close()
        raise VideoError(f"{name}: no video stream (audio-only or data file)")
    try:
        if not budget.allow_still_images and container.format.name in STILL_IMAGE_FORMATS:
            raise BudgetError(f"{name}: a still image ({container.format.name}), not a video "
                              "(setting allow_still_images)")
        codec = container.streams.video[0].codec_context
        if codec.width and codec.height:  # the container's word; decoded frames are checked too
            budget.check_frame_size(name, codec.height, codec.width)
    except BaseException:
        container.close()
        raise
    return container, name


def _reason(e: Exception) -> str:
    text = (getattr(e, "strerror", None) or str(e)).strip()
    return text.splitlines()[0] if text else type(e).__name__


def count_frames(source: VideoSource, budget: DecodeBudget = DEFAULT_BUDGET) -> int:
    """Number of video frames, counted from the demuxed packets (no decoding), within ``budget``."""
    started = time.monotonic()
    container, name = _open(source, budget)
    count = 0
    try:
        for packet in container.demux(container.streams.video[0]):
            if packet.size > 0:
                count += 1
                if count % 256 == 0:
                    budget.check_frames(name, count)
                    budget.check_time(name, started)
                    check_stop(name)
        budget.check_frames(name, count)
        return count
    except av.FFmpegError as e:
        raise VideoError(f"{name}: corrupt or truncated video ({_reason(e)})") from e
    finally:
        container.close()


def decode_frames(source: VideoSource, wanted: Iterable[int] | None = None,
                  transform: Callable[[np.ndarray], np.ndarray] | None = None,
                  budget: DecodeBudget = DEFAULT_BUDGET) -> tuple[dict[int, np.ndarray], int]:
    """Decode the video once; return ({index: RGB frame (H, W, 3) uint8}, frames decoded).

    ``wanted`` limits which frames are kept (all when None); ``transform`` is applied to each kept frame
    (e.g. resizing) so that only small frames stay in memory. Over ``budget``: ``BudgetError``.
    """
    keep = None if wanted is None else set(int(i) for i in wanted)
    started = time.monotonic()
    container, name = _open(source, budget)
    frames: dict[int, np.ndarray] = {}
    index = 0
    try:
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        for frame in container.decode(stream):
            if index == 0 or index % 16 == 0:
                budget.check_frame_size(name, frame.height, frame.width)  # the stream may change size
                budget.check_frames(name, index + 1)
                budget.check_time(name, started)
                check_stop(name)
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
