"""One sequential pass over a video: timed frames, and the centre-cropped clips of windows every ``stride`` s.

For timelines of long videos. The video is decoded once, front to back; each frame is converted to RGB and
resized to the view's short side right after decoding, and only when a pending window needs it. Memory does not
grow with the video: a ring buffer holds the frames of the windows still open (at most one clip span, 61 frames
for 16x4), never the video.

Windows follow the presentation timestamps (variable frame rate works): window k opens at the first frame whose
time is at least ``k * stride`` after the first frame, and takes ``clip_len`` frames every ``frame_interval``
frames from there (mmaction2's SampleFrames clip, in frame indices, so the model sees what it was trained on).
A window closes, and is yielded, as soon as its last frame is decoded. A video shorter than one clip span gives
one window whose frames loop (indices modulo the frame count, as mmaction2 does).

The ``DecodeBudget`` applies (the header's limits, pixels per frame, frames, decode CPU seconds: spent in this
pass, not in the caller's work between windows), and so does cancellation (``check_stop``, every few frames).
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Callable, Iterator, NamedTuple

import av
import numpy as np

from ..errors import InputError, StillImageError, VideoError
from .decode import DEFAULT_BUDGET, DecodeBudget, DecodeMeter, VideoSource, error_reason, open_video
from .views import View, crop_boxes, resize_short_side

FALLBACK_FPS = 25.0      # frame rate assumed when the container gives neither timestamps nor a rate


@dataclass
class StreamStats:
    """What a pass has done so far (read from other threads while it runs)."""
    frames_decoded: int = 0
    frames_converted: int = 0     # converted to RGB and resized (the ones some window needs)
    max_buffered: int = 0         # most frames held at once by the ring buffer
    decode_seconds: float = 0.0   # wall seconds spent inside the pass (the budget counts its CPU seconds)
    finished: bool = False


class TimedFrame(NamedTuple):
    index: int                # decode order = presentation order
    time: float               # seconds from the first frame
    image: np.ndarray | None  # resized RGB uint8 (H, W, 3), or None when ``keep`` said it is not needed


class WindowClip(NamedTuple):
    start: float              # seconds from the first frame: the clip's first frame
    end: float                # the clip's last frame plus one frame duration
    indices: tuple[int, ...]  # frame indices of the clip
    clip: np.ndarray          # (clip_len, crop, crop, 3) uint8


def check_stride(stride) -> float:
    if isinstance(stride, bool) or not isinstance(stride, (int, float, np.integer, np.floating)) \
            or not math.isfinite(stride) or stride <= 0:
        raise InputError(f"stride must be a positive number of seconds, got {stride!a}")
    return float(stride)


def iter_frames(source: VideoSource, short_side: int, keep: Callable[[int, float], bool] | None = None,
                budget: DecodeBudget = DEFAULT_BUDGET, stats: StreamStats | None = None) -> Iterator[TimedFrame]:
    """Decode ``source`` once, front to back: every frame with its time; frames ``keep(index, time)`` accepts
    (all when None) come converted to RGB and resized to ``short_side``. Refusals: ``VideoError`` /
    ``BudgetError``; ``DecodeCancelled`` when the thread's ``stop_when`` check says stop."""
    stats = stats if stats is not None else StreamStats()
    container, name = open_video(source, budget)
    # A timeline's work grows with the video by design: bounded by max_frames (the whole video), not by
    # max_decoded_frames. CPU seconds count this pass only: the clock is read within one resumption (one thread).
    meter = DecodeMeter(budget, name, max_decoded_frames=budget.max_frames)
    entered, spent = time.perf_counter(), 0.0  # wall seconds inside the pass (the "decode" stage of a timeline)
    index = 0
    try:
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        clock = _Clock(stream)
        frames = container.decode(stream)
        while True:
            try:
                frame = next(frames)
            except StopIteration:
                break
            meter.frame(frame)
            budget.check_frames(name, index + 1)
            t = clock.time_of(frame)
            image = None
            if keep is None or keep(index, t):
                image = resize_short_side(frame.to_ndarray(format="rgb24"), short_side)
                stats.frames_converted += 1
            index += 1
            stats.frames_decoded = index
            meter.pause()  # the caller's time between frames is not ours
            spent = stats.decode_seconds = spent + time.perf_counter() - entered
            yield TimedFrame(index - 1, t, image)
            entered = time.perf_counter()
            meter.resume()
    except av.FFmpegError as e:
        raise VideoError(f"{name}: corrupt or truncated video after {index} frames ({error_reason(e)})") from e
    finally:
        container.close()
        stats.finished = True
    if index == 0:
        raise VideoError(f"{name}: video stream has no decodable frames")


class _Clock:
    """Frame times in seconds from the first frame: the presentation timestamps, made monotonic; a frame without
    one (or with one that goes backwards: a broken index) gets the previous time plus one nominal frame."""

    def __init__(self, stream):
        rate = stream.average_rate or stream.guessed_rate or stream.base_rate
        fps = float(rate) if rate else 0.0
        self.frame_seconds = 1.0 / fps if 0 < fps < 1000 else 1.0 / FALLBACK_FPS
        self.first: float | None = None
        self.previous: float | None = None

    def time_of(self, frame) -> float:
        raw = frame.time
        if raw is None or not math.isfinite(raw):
            t = 0.0 if self.previous is None else self.previous + self.frame_seconds
        else:
            if self.first is None:
                self.first = raw if self.previous is None else raw - self.previous - self.frame_seconds
            t = raw - self.first
            if self.previous is not None and t <= self.previous:
                t = self.previous + self.frame_seconds
        self.previous = t
        return t


class _OpenWindow(NamedTuple):
    first: int   # index of its first frame
    start: float


def window_clips(source: VideoSource, *, stride: float, view: View, clip_len: int = 16, frame_interval: int = 4,
                 budget: DecodeBudget = DEFAULT_BUDGET, stats: StreamStats | None = None) -> Iterator[WindowClip]:
    """The centre-cropped clips of windows every ``stride`` seconds, each yielded as soon as its last frame is
    decoded (see the module docstring). ``view``: its short side and centre crop (the 1x1 view)."""
    stride = check_stride(stride)
    if view.three_crop:
        raise InputError("timeline windows take one centre crop per clip; give a view without three_crop")
    stats = stats if stats is not None else StreamStats()
    span = (clip_len - 1) * frame_interval + 1
    buffer: dict[int, np.ndarray] = {}       # frame index -> centre crop, only frames open windows need
    open_windows: list[_OpenWindow] = []
    next_start = 0.0
    first_closed = False

    def keep(index: int, t: float) -> bool:
        nonlocal next_start
        if t >= next_start - 1e-9:
            open_windows.append(_OpenWindow(index, t))
            next_start = (math.floor(t / stride + 1e-9) + 1) * stride  # one window per frame, even over a gap
        if not first_closed and index < span:
            return True  # until the first window closes, every frame: a shorter video loops over all of them
        return any(0 <= index - w.first < span and (index - w.first) % frame_interval == 0 for w in open_windows)

    last_time = 0.0
    for frame in iter_frames(source, view.short_side, keep, budget, stats):
        last_time = frame.time
        if frame.image is not None:
            buffer[frame.index] = _centre_crop(frame.image, view)
            stats.max_buffered = max(stats.max_buffered, len(buffer))
        while open_windows and frame.index - open_windows[0].first == span - 1:
            window = open_windows.pop(0)
            first_closed = True
            indices = tuple(window.first + j * frame_interval for j in range(clip_len))
            yield _window(buffer, indices, window.start, frame.time, span)
        if first_closed:
            oldest = open_windows[0].first if open_windows else frame.index + 1
            for i in [i for i in buffer if i < oldest]:
                del buffer[i]
    total = stats.frames_decoded
    if total == 1 and not budget.allow_still_images:
        raise StillImageError(f"{_name(source)}: a still image (a video of one frame), not a video "
                          "(setting allow_still_images)")
    if not first_closed and total > 0:  # shorter than one clip span: one window, looped frames
        indices = tuple((j * frame_interval) % total for j in range(clip_len))
        yield _window(buffer, indices, 0.0, last_time, total)


def _name(source: VideoSource) -> str:
    return "<bytes>" if isinstance(source, (bytes, bytearray, memoryview)) else str(source)


def _centre_crop(image: np.ndarray, view: View) -> np.ndarray:
    h, w = image.shape[:2]
    c = view.crop_size
    if min(h, w) < c:
        raise VideoError(f"frames of {h}x{w} are smaller than the {c}x{c} crop")
    top, left = crop_boxes(h, w, view)[0]
    return np.ascontiguousarray(image[top:top + c, left:left + c])


def _window(buffer: dict, indices: tuple[int, ...], start: float, last: float, frames: int) -> WindowClip:
    """The clip of ``indices``, from ``start`` to one mean frame duration (over its ``frames``) after ``last``."""
    frame_seconds = (last - start) / (frames - 1) if frames > 1 and last > start else 1.0 / FALLBACK_FPS
    return WindowClip(start, last + frame_seconds, indices, np.stack([buffer[i] for i in indices]))


__all__ = ["StreamStats", "TimedFrame", "WindowClip", "check_stride", "iter_frames", "window_clips"]
