"""Test and benchmark videos made here with PyAV: any codec, GOP, B-frames, container, variable frame rate.

Content is cheap to make at any size and moves in every frame (a smooth texture scrolling sideways plus a
bright block that walks along the top), so a shifted frame never equals the right one. Frames are built in
YUV 4:2:0 directly (no RGB conversion): a 3-minute 1080p video takes seconds to make, not minutes.
"""
from __future__ import annotations

import io
import os
from fractions import Fraction

import av
import numpy as np

CONTAINER_FORMATS = {"mp4": "mp4", "mkv": "matroska", "webm": "webm", "avi": "avi", "ts": "mpegts",
                     "h264": "h264", "hevc": "hevc", "mov": "mov"}


def _texture(height: int, width: int, seed: int) -> np.ndarray:
    """A smooth random luma texture twice as wide as the frame (so it can scroll)."""
    rng = np.random.default_rng(seed)
    coarse = rng.integers(16, 236, (height // 16 + 2, width // 8 + 2)).astype(np.float32)
    rows = np.linspace(0, coarse.shape[0] - 1, height)
    cols = np.linspace(0, coarse.shape[1] - 1, 2 * width)
    r0, c0 = rows.astype(int), cols.astype(int)
    r1, c1 = np.minimum(r0 + 1, coarse.shape[0] - 1), np.minimum(c0 + 1, coarse.shape[1] - 1)
    fr, fc = (rows - r0)[:, None], (cols - c0)[None, :]
    top = coarse[r0][:, c0] * (1 - fc) + coarse[r0][:, c1] * fc
    bottom = coarse[r1][:, c0] * (1 - fc) + coarse[r1][:, c1] * fc
    return (top * (1 - fr) + bottom * fr).astype(np.uint8)


def yuv_frame(texture: np.ndarray, index: int, height: int, width: int) -> np.ndarray:
    """Frame ``index`` as a (H*3/2, W) yuv420p plane stack."""
    shift = (index * 3) % width
    y = texture[:, shift:shift + width].copy()
    block = max(height // 12, 2)
    x0 = (index * block // 2) % max(width - block, 1)
    y[:block, x0:x0 + block] = 235
    u = np.full((height // 2, width // 2), 128 + (index % 50), np.uint8)
    v = np.full((height // 2, width // 2), 128 - (index % 40), np.uint8)
    return np.concatenate([y, u.reshape(-1, width), v.reshape(-1, width)])


def make_test_video(path: str | os.PathLike | None = None, *, frames: int = 100, width: int = 160,
                    height: int = 120, fps: int = 25, codec: str = "libx264", gop: int = 50, bframes: int = 0,
                    container: str = "mp4", vfr: bool = False, options: dict | None = None,
                    container_options: dict | None = None, seed: int = 0) -> bytes | str:
    """Encode a moving test video; returns the path written, or the bytes when ``path`` is None.

    ``vfr``: irregular timestamps (frame gaps of 1 to 3 ticks of 1/(2*fps) s). ``options``: encoder options
    (e.g. {"preset": "ultrafast"}); ``container_options``: muxer options (e.g. {"movflags": "faststart"})."""
    width, height = width // 2 * 2, height // 2 * 2
    target = io.BytesIO() if path is None else os.fspath(path)
    texture = _texture(height, width, seed)
    rng = np.random.default_rng(seed + 1)
    with av.open(target, mode="w", format=CONTAINER_FORMATS.get(container, container),
                 options=container_options or {}) as out:
        stream = out.add_stream(codec, rate=fps * 2 if vfr else fps)
        stream.width, stream.height = width, height
        stream.pix_fmt = "yuvj420p" if codec == "mjpeg" else "yuv420p"
        stream.options = {"g": str(gop), "bf": str(bframes), **(options or {})}
        if codec in ("mpeg4", "mjpeg"):
            stream.codec_context.gop_size = gop
            stream.codec_context.max_b_frames = bframes
            stream.options = dict(options or {})
        if vfr:
            stream.codec_context.time_base = Fraction(1, fps * 2)
        pts = 0
        for i in range(frames):
            frame = av.VideoFrame.from_ndarray(yuv_frame(texture, i, height, width), format="yuv420p")
            if stream.pix_fmt != "yuv420p":
                frame = frame.reformat(format=stream.pix_fmt)
            if vfr:
                frame.pts, frame.time_base = pts, Fraction(1, fps * 2)
                pts += int(rng.integers(1, 4))
            out.mux(stream.encode(frame))
        out.mux(stream.encode())
    return target.getvalue() if path is None else target


def make_still_video(path: str | os.PathLike | None = None, *, frames: int = 200_000, side: int = 64,
                     fps: int = 25, gop: int = 250, container: str = "mp4") -> bytes | str:
    """An H.264 video of one image repeated ``frames`` times (an upload that is a still image at any length).

    Cheap at any length: one closed GOP of ``gop`` frames is encoded (ultrafast, no B-frames) and its packets
    are muxed again and again with shifted timestamps (each GOP starts with an IDR frame, so the copies form a
    valid stream): 200,000 frames in a few seconds instead of the ~25 s a frame-by-frame encode takes."""
    image = np.full((side, side, 3), (40, 120, 200), np.uint8)
    image[side // 4:3 * side // 4, side // 4:3 * side // 4] = 250
    target = io.BytesIO() if path is None else os.fspath(path)
    with av.open(target, mode="w", format=CONTAINER_FORMATS.get(container, container)) as out:
        stream = out.add_stream("libx264", rate=fps)
        stream.width = stream.height = side
        stream.pix_fmt = "yuv420p"
        stream.options = {"preset": "ultrafast", "g": str(gop), "keyint_min": str(gop), "bf": "0",
                          "x264-params": "scenecut=0"}
        picture = av.VideoFrame.from_ndarray(image, format="rgb24")
        gop_packets = []
        for i in range(min(gop, frames)):
            picture.pts = i
            gop_packets += stream.encode(picture)
        gop_packets += stream.encode()
        copies = [(bytes(p), p.pts, p.dts, p.is_keyframe) for p in gop_packets]
        _mux_repeated(out, stream, copies, gop_packets[0].time_base, len(copies), frames)
    return target.getvalue() if path is None else target


def _mux_repeated(out, stream, packets: list, time_base, period: int, frames: int) -> None:
    """Mux ``packets`` (one GOP of ``period`` frames: data, pts, dts, keyframe; timestamps in ``time_base`` units
    of one frame) again and again, timestamps shifted by ``period`` per copy, up to ``frames`` frames."""
    written = 0
    while written < frames:
        shift = written
        for data, pts, dts, key in packets[:frames - written]:
            packet = av.Packet(data)
            packet.stream, packet.time_base = stream, time_base
            packet.pts, packet.dts, packet.is_keyframe = pts + shift, dts + shift, key
            out.mux(packet)
        written += min(period, frames - written)
