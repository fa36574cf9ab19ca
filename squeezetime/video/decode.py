"""Video file (path or bytes) -> RGB frames, with PyAV, within a per-video budget.

Every video is untrusted: ``DecodeBudget`` bounds what one request may cost, each refusal from the cheapest
evidence. The video's size (pixels of a frame, frame count, duration, pixel rate) is read from the container header
before a frame is decoded; the work (frames decoded, CPU seconds) is counted by a ``DecodeMeter`` as it is done, and
a request over it stops where it is. Going over raises ``BudgetError`` naming the setting that raises the limit.
The same budget applies on every path (Python, CLI, Triton, TorchServe).

``VideoReader`` decodes only the frames asked for: one open of the file, a frame table (presentation
timestamps and keyframes), then for each run of wanted frames a seek to the keyframe before it and a decode
forward, skipping ahead by seeking again only when the next wanted frame lies past another keyframe.
The frame table comes from the container's own index when it can be trusted (MP4/MOV without frame
reordering: one index entry per frame, timestamps increasing; used in place, ``IndexTable``), else from a scan
of the packets (no decoding: variable frame rate, B-frames, Matroska/WebM, MPEG-TS, AVI). Frame ``i`` is the ``i``-th
timestamp in presentation order, exactly as a linear decode numbers it. Each decoded frame is checked
against the table: after a seek the first frame must be a keyframe at or before the wanted one and the
following frames must come consecutively; a missing or unknown timestamp, a seek that lands late, or a
frame the decoder drops switches to one linear decode from the start (``decode_frames``). So a file whose
index lies (wrong frame count, wrong timestamps, no index) gets the frames of a linear decode, or an error,
never shifted frames.

Still images are refused unless ``allow_still_images``: an image file (PNG, JPEG, ... by container format),
a video stream with a single frame (an image turned into a one-frame video), and a video without motion: when no
frame the request decoded for its clips differs from the first by more than ``STILL_TOLERANCE`` (8) levels in any
pixel (after resizing). No frame is decoded only to prove stillness: the evidence is what the views cost anyway
(16 frames over 2.4 s for 1x1, 160 frames spread over the whole video for 10x3). Not bit-equality: a lossy codec
refines a repeated image over its first frames (H.264: up to 5 levels); any moving object differs by far more.
"""
from __future__ import annotations

import io
import os
import time
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Callable, Iterable, Sequence

import av
import numpy as np

from ..errors import BudgetError, DecodeCancelled, InputError, StillImageError, VideoError

VideoSource = str | os.PathLike | bytes | bytearray | memoryview
STILL_IMAGE_FORMATS = {"image2", "png_pipe", "jpeg_pipe", "webp_pipe", "bmp_pipe", "tiff_pipe", "gif", "gif_pipe",
                       "apng", "jpegxl_pipe", "qoi_pipe", "pam_pipe", "ppm_pipe", "pgm_pipe", "psd_pipe", "svg_pipe"}


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
    """What one request may cost. The video's own size (frame size, frame count, duration, pixel rate) is checked
    from the container header before anything is decoded; the work itself (frames decoded, CPU seconds) is
    counted while decoding, which stops where it is when over. ``BudgetError`` names the setting."""
    max_pixels: int = 4096 * 2304       # per frame: 4K (DCI and UHD) passes, 8K does not
    max_frames: int = 200_000           # frames in the video (header, frame table): about 2 h at 25 fps
    max_seconds: float = 30.0           # CPU seconds of the decoding thread for one request (max_decode_seconds)
    allow_still_images: bool = False    # an image file, a one-frame video or a video without motion
    # Frames decoded for one request. A request decodes the frames of its clips plus those between each clip and
    # the keyframe before it: 10x3 on x264's default 10 s GOP (250 frames) decodes at most 10 x (249 + 61) = 3,100.
    max_decoded_frames: int = 3_200
    max_duration: float = 3 * 3600.0    # seconds of video (header)
    max_pixel_rate: float | None = None  # pixels per second (header: width x height x fps); None: max_pixels x 60
    clock: Callable[[], float] = field(default=time.thread_time, repr=False, compare=False)  # CPU seconds; tests inject

    def __post_init__(self):
        limits = (self.max_pixels, self.max_frames, self.max_seconds, self.max_decoded_frames, self.max_duration,
                  self.pixel_rate_limit)
        if not all(limit > 0 for limit in limits):
            raise InputError("decode budget limits must be positive")

    @property
    def pixel_rate_limit(self) -> float:
        return self.max_pixel_rate if self.max_pixel_rate is not None else self.max_pixels * 60.0

    def check_frame_size(self, name: str, height: int, width: int) -> None:
        if height * width > self.max_pixels:
            raise BudgetError(f"{name}: frames of {width}x{height} ({height * width / 1e6:.1f} Mpixels) are over "
                              f"the limit of {self.max_pixels / 1e6:.1f} Mpixels (setting max_pixels)")

    def check_frames(self, name: str, frames: int) -> None:
        if frames > self.max_frames:
            raise BudgetError(f"{name}: more than {self.max_frames} frames (setting max_frames)")

    def check_header(self, name: str, header: "Header") -> None:
        """The container's word on the video's size: refused before a frame is decoded."""
        if header.height and header.width:
            self.check_frame_size(name, header.height, header.width)
        if header.frames:
            self.check_frames(name, header.frames)
        if header.duration and header.duration > self.max_duration:
            raise BudgetError(f"{name}: {header.duration:.0f} s of video, over the limit of {self.max_duration:g} s "
                              "(setting max_duration)")
        rate = header.height * header.width * header.fps
        if rate > self.pixel_rate_limit:
            raise BudgetError(f"{name}: {rate / 1e6:.0f} Mpixels per second ({header.width}x{header.height} at "
                              f"{header.fps:g} fps), over the limit of {self.pixel_rate_limit / 1e6:.0f} "
                              "(setting max_pixel_rate)")

    def check_time(self, name: str, seconds: float) -> None:
        """``seconds``: CPU seconds this request's decoding has spent so far (``clock`` deltas)."""
        if seconds > self.max_seconds:
            raise BudgetError(f"{name}: decoding took over {self.max_seconds:g} CPU seconds "
                              "(setting max_decode_seconds)")


@dataclass(frozen=True)
class Header:
    """What the container says about its first video stream; 0 where it says nothing."""
    width: int = 0
    height: int = 0
    frames: int = 0
    duration: float = 0.0  # seconds
    fps: float = 0.0

    @staticmethod
    def of(container) -> "Header":
        stream = container.streams.video[0]
        codec = stream.codec_context
        duration = float(stream.duration * stream.time_base) if stream.duration and stream.time_base else 0.0
        if not duration and container.duration:
            duration = container.duration / 1e6
        frames = max(0, stream.frames or 0)
        # The mean frame rate only: guessed and base rates can be a container's tick rate (1000 for Matroska's
        # variable frame rate), which would refuse an ordinary video on max_pixel_rate.
        fps = float(stream.average_rate) if stream.average_rate else (frames / duration if frames and duration else 0)
        fps = fps if 0 < fps < 1e6 else 0.0
        return Header(codec.width or 0, codec.height or 0, frames, max(0.0, duration), fps)


class DecodeMeter:
    """The work one request's decoding has done: frames decoded and CPU seconds of the decoding thread (the
    budget's ``clock``), checked against the budget as it goes; also polls ``stop_when`` every 16 frames.
    Readable from tests and callers (``frames_decoded``, ``seconds``)."""

    def __init__(self, budget: DecodeBudget, name: str, max_decoded_frames: int | None = None):
        self.budget, self.name = budget, name
        self.max_decoded_frames = budget.max_decoded_frames if max_decoded_frames is None else max_decoded_frames
        self.frames_decoded = 0
        self.seconds = 0.0
        self._since = budget.clock()

    def frame(self, frame) -> None:
        """One more frame decoded; ``BudgetError`` / ``DecodeCancelled`` when the request must stop here."""
        self.frames_decoded += 1
        if self.frames_decoded > self.max_decoded_frames:
            raise BudgetError(f"{self.name}: more than {self.max_decoded_frames} frames decoded for one request "
                              "(setting max_decoded_frames)")
        if self.frames_decoded % 16 == 1:
            self.budget.check_frame_size(self.name, frame.height, frame.width)  # the stream may change size
            self.tick()

    def tick(self) -> None:
        """Account the CPU seconds since the last tick and check them and cancellation."""
        self.pause()
        self.resume()
        self.budget.check_time(self.name, self.seconds)
        check_stop(self.name)

    def pause(self) -> None:
        """Account the CPU seconds until now; what follows until ``resume`` is not this decode's."""
        self.seconds += max(0.0, self.budget.clock() - self._since)

    def resume(self) -> None:
        self._since = self.budget.clock()


DEFAULT_BUDGET = DecodeBudget()


def open_video(source: VideoSource, budget: DecodeBudget = DEFAULT_BUDGET):
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
    _check_header(stream, name, budget)
    try:
        container = av.open(stream, mode="r")
    except (av.FFmpegError, ValueError, OSError) as e:
        raise VideoError(f"{name}: not a readable video ({error_reason(e)})") from e
    if not container.streams.video:
        container.close()
        raise VideoError(f"{name}: no video stream (audio-only or data file)")
    try:
        if not budget.allow_still_images and container.format.name in STILL_IMAGE_FORMATS:
            raise StillImageError(f"{name}: a still image ({container.format.name}), not a video "
                              "(setting allow_still_images)")
        budget.check_header(name, Header.of(container))  # the probed values; decoded frames are checked too
    except BaseException:
        container.close()
        raise
    return container, name


def _check_header(stream, name: str, budget: DecodeBudget) -> None:
    """Refuse a video over the budget's size limits (frame size, frame count, duration, pixel rate) from the
    container's header alone, before the real open: ffmpeg's stream probing (``av.open``) decodes a frame at full
    size to complete the codec parameters, 0.1 s of CPU for one 8K H.264 frame, paid by every over-budget upload.
    This open decodes nothing (``skip_frame=all``); the real open after it probes as usual, so what is decoded does
    not depend on it. Unreadable input: the real open says why."""
    try:
        with av.open(stream, mode="r", options={"skip_frame": "all"}) as probe:
            header = Header.of(probe) if probe.streams.video else None
    except (av.FFmpegError, ValueError, OSError):
        return
    finally:
        if isinstance(stream, io.BytesIO):
            stream.seek(0)
    if header is not None:
        budget.check_header(name, header)


def error_reason(e: Exception) -> str:
    text = (getattr(e, "strerror", None) or str(e)).strip()
    return text.splitlines()[0] if text else type(e).__name__


def count_frames(source: VideoSource, budget: DecodeBudget = DEFAULT_BUDGET) -> int:
    """Number of video frames, counted from the demuxed packets (no decoding), within ``budget``."""
    container, name = open_video(source, budget)
    meter = DecodeMeter(budget, name)
    count = 0
    try:
        for packet in container.demux(container.streams.video[0]):
            if packet.size > 0:
                count += 1
                if count % 256 == 0:
                    budget.check_frames(name, count)
                    meter.tick()
        budget.check_frames(name, count)
        return count
    except av.FFmpegError as e:
        raise VideoError(f"{name}: corrupt or truncated video ({error_reason(e)})") from e
    finally:
        container.close()


def decode_frames(source: VideoSource, wanted: Iterable[int] | None = None,
                  transform: Callable[[np.ndarray], np.ndarray] | None = None,
                  budget: DecodeBudget = DEFAULT_BUDGET, meter: DecodeMeter | None = None
                  ) -> tuple[dict[int, np.ndarray], int]:
    """Decode the video once, front to back; return ({index: RGB frame (H, W, 3) uint8}, frames decoded).

    ``wanted`` limits which frames are kept (all when None); ``transform`` is applied to each kept frame
    (e.g. resizing) so that only small frames stay in memory. Over ``budget``: ``BudgetError``. ``meter``: the
    request's account (frames decoded, CPU seconds); without one, the frames are bounded by ``max_frames`` (a
    whole-video decode), not ``max_decoded_frames``.
    """
    keep = None if wanted is None else set(int(i) for i in wanted)
    container, name = open_video(source, budget)
    meter = meter or DecodeMeter(budget, name, max_decoded_frames=budget.max_frames)
    frames: dict[int, np.ndarray] = {}
    index = 0
    try:
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        for frame in container.decode(stream):
            meter.frame(frame)
            budget.check_frames(name, index + 1)
            if keep is None or index in keep:
                rgb = frame.to_ndarray(format="rgb24")
                frames[index] = transform(rgb) if transform else rgb
            index += 1
    except av.FFmpegError as e:
        raise VideoError(f"{name}: corrupt or truncated video after {index} frames ({error_reason(e)})") from e
    finally:
        container.close()
    if index == 0:
        raise VideoError(f"{name}: video stream has no decodable frames")
    return frames, index


def read_video(source: VideoSource, budget: DecodeBudget = DEFAULT_BUDGET) -> np.ndarray:
    """All frames as (T, H, W, 3) uint8 RGB (up to the budget's ``max_frames``)."""
    frames, total = decode_frames(source, budget=budget)
    return np.stack([frames[i] for i in range(total)])


class _Unreliable(Exception):
    """The frame table and the decoder disagree: decode linearly instead."""


MP4_FORMATS = {"mov,mp4,m4a,3gp,3g2,mj2"}
# A lossy codec does not repeat a still image bit for bit (later frames refine it): measured on H.264 stills,
# decoded frames differ from the first by at most 5 levels; moving video by over 200 in some pixels.
STILL_TOLERANCE = 8


@dataclass(frozen=True)
class FrameTable:
    """Presentation timestamps of every frame (index i = i-th frame of a linear decode) and keyframe indices;
    ``pts`` is None when the timestamps cannot be trusted (missing, duplicated): only a linear decode is exact."""
    count: int
    pts: np.ndarray | None   # sorted (strictly increasing) when not None
    keyframes: np.ndarray    # sorted frame indices of the keyframes (empty when pts is None)
    source: str              # "index" (the container's) or "scan" (the packets)

    def keyframe_before(self, index: int) -> int:
        return int(self.keyframes[np.searchsorted(self.keyframes, index, side="right") - 1])

    def index_of(self, pts: int) -> int | None:
        """The frame whose timestamp is ``pts``, or None (a binary search: no per-frame dictionary to build)."""
        i = int(np.searchsorted(self.pts, pts))
        return i if i < self.count and int(self.pts[i]) == pts else None

    def is_keyframe(self, index: int) -> bool:
        i = int(np.searchsorted(self.keyframes, index))
        return i < len(self.keyframes) and int(self.keyframes[i]) == index


class _EntryTimestamps:
    """``pts[i]`` of an ``IndexTable``: entry ``i``'s timestamp, read when asked."""

    def __init__(self, entries):
        self.entries = entries

    def __len__(self) -> int:
        return len(self.entries)

    def __getitem__(self, index: int) -> int:
        return int(self.entries[int(index)].timestamp)


class IndexTable:
    """An MP4 sample table used in place, without reading it whole: 200,000 entries cost 0.09 s of Python to read
    into arrays, more than a request's whole decode. Lookups are FFmpeg's binary search of the index
    (``av_index_search_timestamp``): the keyframe at or before a frame, the frame of a timestamp. Checked on
    opening: entry 0 is a keyframe, the first ``CHECKED_ENTRIES`` entries are not discarded (an edit list's
    pre-roll) and timestamps increase over the first entries and at ``CHECKED_ENTRIES`` points spread over the
    table; and as it is used: every decoded frame's timestamp must be the entry's, frames consecutive. A table that
    fails is not used (the packets are scanned) or switches the video to a linear decode, as before."""
    CHECKED_ENTRIES = 256
    source = "index"

    def __init__(self, entries):
        self.entries, self.count = entries, len(entries)
        self.pts = _EntryTimestamps(entries)

    @classmethod
    def of(cls, entries) -> "IndexTable | None":
        n = len(entries)
        head = [entries[i] for i in range(min(n, cls.CHECKED_ENTRIES))]
        spread = np.unique(np.linspace(0, n - 1, min(n, cls.CHECKED_ENTRIES)).round().astype(np.int64))
        stamps = [e.timestamp for e in head] + [entries[int(i)].timestamp for i in spread]
        if not head or not head[0].is_keyframe or any(e.is_discard for e in head):
            return None
        head_stamps, spread_stamps = np.asarray(stamps[:len(head)]), np.asarray(stamps[len(head):])
        if (np.diff(head_stamps) <= 0).any() or (np.diff(spread_stamps) <= 0).any():
            return None
        return cls(entries)

    def keyframe_before(self, index: int) -> int:
        return self.entries.search_timestamp(self.entries[int(index)].timestamp)

    def index_of(self, pts: int) -> int | None:
        i = self.entries.search_timestamp(pts, any_frame=True)
        return i if 0 <= i < self.count and self.entries[i].timestamp == pts else None

    def is_keyframe(self, index: int) -> bool:
        return bool(self.entries[int(index)].is_keyframe)


class VideoReader:
    """One open video: ``num_frames`` (from the frame table) and ``frames(indices, transform)``, which decodes
    only what those frames need (module docstring). Use as a context manager, or call ``close()``.
    ``meter``: the request's account of decoded frames and CPU seconds (one is made when not given)."""

    def __init__(self, source: VideoSource, budget: DecodeBudget = DEFAULT_BUDGET, meter: DecodeMeter | None = None):
        self.source, self.budget = source, budget
        self.container, self.name = open_video(source, budget)
        self.meter = meter or DecodeMeter(budget, self.name)
        try:
            self.stream = self.container.streams.video[0]
            self.stream.thread_type = "AUTO"
            self.table = self._frame_table()
        except av.FFmpegError as e:
            self.close()
            raise VideoError(f"{self.name}: corrupt or truncated video ({error_reason(e)})") from e
        except BaseException:
            self.close()
            raise
        if self.table.count == 0:
            self.close()
            raise VideoError(f"{self.name}: video stream has no frames")
        if self.table.count == 1 and not budget.allow_still_images:
            self.close()
            raise StillImageError(f"{self.name}: a still image (a video of one frame), not a video "
                              "(setting allow_still_images)")
        self.linear = self.table.pts is None  # set when the table proves unreliable while decoding

    @property
    def num_frames(self) -> int:
        return self.table.count

    def close(self) -> None:
        self.container.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    # -- the frame table ------------------------------------------------------------------------------------
    def _frame_table(self) -> "FrameTable | IndexTable":
        return self._index_table() or self._scan_table()

    def _index_table(self) -> "IndexTable | None":
        """The MP4 sample table, trusted only where it must equal the packets: one entry per frame, no frame
        reordering (with B-frames the index holds decode timestamps, not presentation ones). Read lazily
        (``IndexTable``): a request touches only the entries of the frames it decodes."""
        s = self.stream
        if self.container.format.name not in MP4_FORMATS or s.codec_context.has_b_frames or not s.frames:
            return None
        entries = s.index_entries
        if len(entries) != s.frames:
            return None
        self.budget.check_frames(self.name, len(entries))
        return IndexTable.of(entries)

    def _scan_table(self) -> FrameTable:
        """Demux every packet (no decoding): the frame count as ``count_frames``, timestamps, keyframes."""
        pts, keys = [], []
        for packet in self.container.demux(self.stream):
            if packet.size <= 0:
                continue
            pts.append(packet.pts)
            keys.append(packet.is_keyframe)
            if len(pts) % 256 == 0:
                self.budget.check_frames(self.name, len(pts))
                self.meter.tick()
        self.budget.check_frames(self.name, len(pts))
        if not pts or any(p is None for p in pts) or len(set(pts)) != len(pts):
            return FrameTable(len(pts), None, np.zeros(0, np.int64), "scan")
        order = np.argsort(np.asarray(pts, np.int64), kind="stable")
        in_order = np.asarray(pts, np.int64)[order]
        keys = np.flatnonzero(np.asarray(keys, bool)[order])
        if len(keys) == 0 or keys[0] != 0:  # the first frame shown must be decodable on its own
            return FrameTable(len(pts), None, np.zeros(0, np.int64), "scan")
        return FrameTable(len(pts), in_order, keys, "scan")

    # -- decoding -------------------------------------------------------------------------------------------
    def frames(self, indices: Iterable[int], transform: Callable[[np.ndarray], np.ndarray] | None = None
               ) -> dict[int, np.ndarray]:
        """{index: transform(RGB frame)} for each wanted index (0 <= index < num_frames)."""
        wanted = sorted({int(i) for i in indices})
        if wanted and not 0 <= wanted[0] <= wanted[-1] < self.num_frames:
            raise InputError(f"{self.name}: frame indices must be in [0, {self.num_frames})")
        if not self.linear:
            try:
                return self._seek_and_decode(wanted, transform)
            except _Unreliable:
                self.linear = True
        frames, decoded = decode_frames(self.source, wanted, transform, self.budget, self.meter)
        if decoded != self.num_frames:  # the decoder's count wins, as before: the caller samples again
            self.table = FrameTable(decoded, None, np.zeros(0, np.int64), self.table.source)
            return frames
        missing = [i for i in wanted if i not in frames]
        if missing:
            raise VideoError(f"{self.name}: frames {missing[:5]} could not be decoded (corrupt stream)")
        return frames

    def plan(self, indices: Iterable[int]) -> list[tuple[int, list[int]]]:
        """The seeks ``frames`` makes: [(keyframe index, wanted frames decoded from it)], in order."""
        runs: list[tuple[int, list[int]]] = []
        for index in sorted({int(i) for i in indices}):
            key = self.table.keyframe_before(index)
            if runs and key <= runs[-1][1][-1]:
                runs[-1][1].append(index)
            else:
                runs.append((key, [index]))
        return runs

    def _seek_and_decode(self, wanted: Sequence[int], transform) -> dict[int, np.ndarray]:
        out: dict[int, np.ndarray] = {}
        position = -1  # index of the last frame decoded; -1: none since the last seek
        i = 0
        while i < len(wanted):
            key = self.table.keyframe_before(wanted[i])
            if position < 0 or key > position:  # a keyframe lies between here and the next wanted frame
                position = self._seek(key)
            position, i = self._decode_run(wanted, i, position, out, transform)
        return out

    def _seek(self, key: int) -> int:
        try:
            self.container.seek(int(self.table.pts[key]), stream=self.stream, backward=True)
        except av.FFmpegError as e:
            raise _Unreliable from e
        return -1

    def _decode_run(self, wanted, i, position, out, transform) -> tuple[int, int]:
        """Decode forward from the current demuxer position until the next wanted frame lies past a keyframe
        ahead of us (then the caller seeks) or every wanted frame is in ``out``. Returns (position, i)."""
        table = self.table
        try:
            for packet in self.container.demux(self.stream):
                for frame in packet.decode():
                    self.meter.frame(frame)
                    index = self._index_of(frame.pts)
                    if position < 0:  # first frame after a seek: a keyframe at or before the wanted one
                        if index > wanted[i] or not table.is_keyframe(index):
                            raise _Unreliable
                    elif index != position + 1:  # a dropped or unknown frame
                        raise _Unreliable
                    position = index
                    if index == wanted[i]:
                        rgb = frame.to_ndarray(format="rgb24")
                        out[index] = transform(rgb) if transform else rgb
                        i += 1
                        if i == len(wanted):
                            return position, i
                        if table.keyframe_before(wanted[i]) > position:
                            return position, i
        except av.FFmpegError as e:
            raise VideoError(f"{self.name}: corrupt or truncated video near frame {position + 1} "
                             f"({error_reason(e)})") from e
        raise _Unreliable  # the stream ended before a frame the table promised

    def _index_of(self, pts) -> int:
        index = None if pts is None else self.table.index_of(int(pts))
        if index is None:
            raise _Unreliable
        return index

    # -- motion -------------------------------------------------------------------------------------------
    def check_motion(self, frames: dict[int, np.ndarray]) -> None:
        """``BudgetError`` when ``frames`` (the ones the request decoded anyway) show no motion: a still image
        repeated, not a video (unless ``allow_still_images``). Never decodes a frame to prove it."""
        if self.budget.allow_still_images or not frames:
            return
        first = next(iter(frames.values()))
        if not _any_moves(first, frames.values()):
            raise StillImageError(f"{self.name}: a still image ({self.num_frames} frames, none of the {len(frames)} "
                              f"sampled differs from the first by more than {STILL_TOLERANCE} levels), not a "
                              "video (setting allow_still_images)")


def _any_moves(first: np.ndarray, frames: Iterable[np.ndarray]) -> bool:
    """Whether any frame differs from ``first`` by more than ``STILL_TOLERANCE`` levels in some pixel."""
    for frame in frames:
        if frame.shape != first.shape:
            return True
        if (np.maximum(frame, first) - np.minimum(frame, first)).max() > STILL_TOLERANCE:
            return True
    return False


def read_frames(source: VideoSource, indices: Iterable[int],
                transform: Callable[[np.ndarray], np.ndarray] | None = None,
                budget: DecodeBudget = DEFAULT_BUDGET) -> dict[int, np.ndarray]:
    """{index: RGB frame} of the wanted frames, decoding only what they need (``VideoReader``)."""
    with VideoReader(source, budget) as reader:
        return reader.frames(indices, transform)
