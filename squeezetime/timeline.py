"""Timelines: what happens when in a long video, one window every ``stride`` seconds.

    for window in classifier.timeline("match.mp4", stride=1.0, topk=3):    # a generator: windows as they come
        print(window.start, window.end, window.top)
    segments(windows)   # consecutive windows with the same top-1 -> [{"start", "end", "label", "score"}]

Each window is one clip of the model's span (16 frames every 4: ``DataConfig.num_frames`` x ``frame_interval``),
centre-cropped as the 1x1 view, from ``squeezetime.video.stream.window_clips``: one sequential decode, memory
independent of the video's length. The decode runs in a background thread, a bounded queue ahead of the network;
whatever windows are ready when the network is free go through it together (up to ``batch_size``), and a lone
ready window goes at once: no window waits for others to fill a batch.
"""
from __future__ import annotations

import queue
import threading
from contextlib import closing
from dataclasses import dataclass
from functools import partial
from typing import Callable, Iterable, Iterator, Sequence

import numpy as np
import torch

from .data_config import DataConfig
from .errors import InputError
from .prediction import Prediction, check_topk, top_k
from .video.decode import DEFAULT_BUDGET, DecodeBudget, DecodeCancelled, VideoSource, stop_when
from .video.stream import StreamStats, WindowClip, check_stride, window_clips

_END = object()
_POLL_SECONDS = 0.1  # how often a blocked decode thread looks whether the timeline was closed


@dataclass(frozen=True, eq=False)  # probs is an array: windows compare by identity
class Window:
    start: float          # seconds from the video's first frame
    end: float
    top: Prediction       # [(label, probability), ...], best first
    probs: np.ndarray     # (classes,) float32: every class's probability

    @property
    def centre(self) -> float:
        return (self.start + self.end) / 2

    def to_dict(self) -> dict:
        return {"start": round(self.start, 6), "end": round(self.end, 6), "top": [[label, p] for label, p in self.top]}


def segments(windows: Iterable[Window]) -> list[dict]:
    """Consecutive windows with the same top-1 label merged: [{"start", "end", "label", "score"}], in order.

    Windows overlap (a clip spans ~2.4 s at 25 fps), so two segments meet half-way between the centres of the
    last window of one and the first window of the next; the first segment starts with the first window and
    the last ends with the last window. ``score``: the mean top-1 probability of the segment's windows."""
    out: list[dict] = []
    scores: list[float] = []
    previous: Window | None = None
    for window in windows:
        label, p = window.top[0]
        if out and out[-1]["label"] == label:
            out[-1]["end"] = window.end
            scores.append(p)
        else:
            if out:
                boundary = (previous.centre + window.centre) / 2
                out[-1].update(end=boundary, score=float(np.mean(scores)))
            out.append({"start": window.start if previous is None else boundary, "end": window.end,
                        "label": label, "score": 0.0})
            scores = [p]
        previous = window
    if out:
        out[-1]["score"] = float(np.mean(scores))
    for segment in out:
        segment["start"], segment["end"] = round(segment["start"], 6), round(segment["end"], 6)
    return out


def timeline_dict(video: str, windows: Sequence[Window]) -> dict:
    """The JSON shape of a timeline: {"video", "windows": [{"start", "end", "top"}], "segments": [...]}."""
    return {"video": video, "windows": [w.to_dict() for w in windows], "segments": segments(windows)}


class _ReadAhead:
    """The decode thread and its bounded queue of ready window clips. It holds no reference to the ``Timeline``,
    so a timeline its caller drops is collected, and closing it (``closed``) stops the thread."""

    def __init__(self, decode: Callable[[], Iterable[WindowClip]], should_stop: Callable[[], bool] | None,
                 capacity: int):
        self.decode, self.user_should_stop = decode, should_stop
        self.closed = threading.Event()
        self.ready: queue.Queue = queue.Queue(maxsize=capacity)
        self.thread = threading.Thread(target=self.run, name="squeezetime-timeline-decode", daemon=True)

    def should_stop(self) -> bool:
        return self.closed.is_set() or bool(self.user_should_stop is not None and self.user_should_stop())

    def run(self) -> None:
        try:
            with stop_when(self.should_stop), closing(self.decode()) as clips:
                for clip in clips:
                    if not self.put(clip):
                        return
            self.put(_END)
        except BaseException as e:  # noqa: BLE001 - handed to the consumer, raised there
            if not self.closed.is_set():
                self.put(e)

    def put(self, item) -> bool:
        """Queue ``item`` for the network, waiting while the read-ahead is full; False once closed."""
        while not self.closed.is_set():
            try:
                self.ready.put(item, timeout=_POLL_SECONDS)
                return True
            except queue.Full:
                continue
        return False

    def batches(self, batch_size: int) -> Iterator[list[WindowClip]]:
        """Lists of ready window clips, in order: all that are ready (up to ``batch_size``), at least one."""
        self.thread.start()
        try:
            while True:
                batch = [self.ready.get()]
                while len(batch) < batch_size and isinstance(batch[-1], WindowClip):
                    try:
                        batch.append(self.ready.get_nowait())
                    except queue.Empty:
                        break
                clips = [item for item in batch if isinstance(item, WindowClip)]
                if clips:
                    yield clips
                if batch[-1] is _END:
                    return
                if isinstance(batch[-1], BaseException):
                    raise batch[-1]
        finally:
            self.closed.set()
            self.thread.join(timeout=30)


class Timeline:
    """An iterator of ``Window``s over one video (see the module docstring); ``Classifier.timeline`` makes one.

    ``probs_of``: uint8 clips (N, T, crop, crop, 3) -> (N, classes) probabilities (the network, wherever it
    runs). ``should_stop``: asked every few frames; True stops the decode (``DecodeCancelled``). Closing the
    iterator (``close()``, leaving a ``with`` block, or dropping it) stops the decode thread too.
    ``stats`` (``StreamStats``) shows the decode's progress: frames decoded, converted, buffered.
    """

    def __init__(self, video: VideoSource, data_config: DataConfig, class_names: Sequence[str],
                 probs_of: Callable[[np.ndarray], np.ndarray], *, stride: float = 1.0, topk: int = 5,
                 batch_size: int = 8, budget: DecodeBudget = DEFAULT_BUDGET,
                 should_stop: Callable[[], bool] | None = None, view: str | None = None):
        self.stride = check_stride(stride)
        self.topk = check_topk(topk)
        if isinstance(batch_size, bool) or not isinstance(batch_size, (int, np.integer)) or batch_size < 1:
            raise InputError(f"batch_size must be an integer >= 1, got {batch_size!a}")
        self.video, self.data_config, self.class_names = video, data_config, list(class_names)
        self.probs_of, self.batch_size, self.budget = probs_of, int(batch_size), budget
        self.view = data_config.view(view)
        self.should_stop = should_stop
        self.stats = StreamStats()
        self.windows_done = 0
        self._windows = self._run()

    def __iter__(self) -> "Timeline":
        return self

    def __next__(self) -> Window:
        return next(self._windows)

    def close(self) -> None:
        """Stop decoding (if still running) and wait for the decode thread."""
        self._windows.close()

    def __enter__(self) -> "Timeline":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def _run(self) -> Iterator[Window]:
        d = self.data_config
        decode = partial(window_clips, self.video, stride=self.stride, view=self.view, clip_len=d.num_frames,
                         frame_interval=d.frame_interval, budget=self.budget, stats=self.stats)
        reader = _ReadAhead(decode, self.should_stop, self.batch_size)
        for clips in reader.batches(self.batch_size):
            probs = np.asarray(self.probs_of(np.stack([c.clip for c in clips])), dtype=np.float32)
            if probs.shape != (len(clips), len(self.class_names)):
                raise InputError(f"expected ({len(clips)}, {len(self.class_names)}) probabilities, "
                                 f"got {probs.shape}")
            for clip, p in zip(clips, probs):
                if self.should_stop is not None and self.should_stop():
                    raise DecodeCancelled("the timeline was cancelled")
                self.windows_done += 1
                yield Window(clip.start, clip.end, top_k(torch.from_numpy(p), self.class_names, self.topk), p)


__all__ = ["Timeline", "Window", "segments", "timeline_dict"]
