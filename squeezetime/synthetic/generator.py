"""Procedural videos whose class can only be told from temporal order.

Each clip shows one shape (rectangle, triangle, arrow, or ellipse with a notch) on a textured
background, moving left/right/up/down, rotating clockwise/counter-clockwise, or zooming in/out.
Every class has a mirror class that is the same video played backwards, so a model that ignores
frame order cannot beat 50 % on a pair: the demo proves that SqueezeTime's squeezed time is used.
"""
from __future__ import annotations

import io
import math
from dataclasses import dataclass

import numpy as np

CLASSES = (
    "moving left", "moving right", "moving up", "moving down",
    "rotating clockwise", "rotating counter-clockwise", "zooming in", "zooming out",
)
REVERSED = {0: 1, 1: 0, 2: 3, 3: 2, 4: 5, 5: 4, 6: 7, 7: 6}  # class of the time-reversed video
SHAPES = ("rectangle", "triangle", "arrow", "notched ellipse")


@dataclass
class Motion:
    label: int
    shape: str
    color: tuple[int, int, int]
    background: tuple[int, int, int]
    center: tuple[float, float]  # start position, fraction of (width, height)
    size: float  # object radius, fraction of the short side
    angle: float  # start orientation, radians
    speed: float  # travel over the whole video: fraction of the frame, radians, or log-scale
    texture_seed: int


def _colors(rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """A random bright object colour on a random dark background: any hue, but a consistent contrast sign,
    so 'where the object arrived' and 'where it left' look different, as in most real footage."""
    hue_object, hue_background = rng.uniform(0.2, 1.0, 3), rng.uniform(0.2, 1.0, 3)
    color = hue_object / hue_object.max() * rng.uniform(200, 255)
    background = hue_background / hue_background.max() * rng.uniform(20, 90)
    return color.round(), background.round()


def random_motion(label: int, rng: np.random.Generator) -> Motion:
    color, background = _colors(rng)
    kind = label // 2
    if kind < 2:  # translation: start off-centre against the direction of travel
        speed = rng.uniform(0.3, 0.45)
        start = 0.5 - speed / 2
        sign = -1 if label in (0, 2) else 1
        along = 0.5 - sign * (0.5 - start)
        across = rng.uniform(0.35, 0.65)
        center = (along, across) if kind == 0 else (across, along)
    else:
        center = (rng.uniform(0.4, 0.6), rng.uniform(0.4, 0.6))
        speed = rng.uniform(1.2, 2.4) if kind == 2 else rng.uniform(0.6, 0.9)
    return Motion(label=label, shape=SHAPES[rng.integers(len(SHAPES))], color=tuple(int(c) for c in color),
                  background=tuple(int(c) for c in background), center=center,
                  size=rng.uniform(0.14, 0.22) if kind != 3 else rng.uniform(0.1, 0.14),
                  angle=rng.uniform(0, 2 * math.pi), speed=speed, texture_seed=int(rng.integers(2**31)))


def pose_at(m: Motion, t: float) -> tuple[float, float, float, float]:
    """(cx, cy, angle, size) at time t in [0, 1]."""
    cx, cy = m.center
    angle, size = m.angle, m.size
    if m.label == 0:
        cx -= m.speed * t
    elif m.label == 1:
        cx += m.speed * t
    elif m.label == 2:
        cy -= m.speed * t
    elif m.label == 3:
        cy += m.speed * t
    elif m.label == 4:  # image y points down, so clockwise on screen is a growing angle
        angle += m.speed * t
    elif m.label == 5:
        angle -= m.speed * t
    elif m.label == 6:
        size *= math.exp(m.speed * t)
    else:
        size *= math.exp(m.speed * (1 - t))
    return cx, cy, angle, size


def _inside(shape: str, u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Mask of a unit shape in its own frame (u to the right, v down), oriented so rotation is visible."""
    if shape == "rectangle":
        return (np.abs(u) < 1.0) & (np.abs(v) < 0.45)
    if shape == "triangle":
        return (v < 0.6) & (v > -1.0 + 1.6 * np.abs(u) * 1.1) & (np.abs(u) < 0.95)
    if shape == "arrow":
        shaft = (np.abs(v) < 0.22) & (u > -1.0) & (u < 0.2)
        head = (u >= 0.2) & (u < 1.0) & (np.abs(v) < 0.75 * (1.0 - u) / 0.8)
        return shaft | head
    ellipse = (u / 1.0) ** 2 + (v / 0.65) ** 2 < 1.0
    notch = ((u - 0.6) ** 2 + v**2) < 0.09
    return ellipse & ~notch


def _texture(height: int, width: int, seed: int) -> np.ndarray:
    """Smooth, static background variation (a few low-frequency waves), in [-1, 1]."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width].astype(np.float32) / max(height, width)
    tex = np.zeros((height, width), np.float32)
    for _ in range(3):
        fx, fy, phase = rng.uniform(1, 4), rng.uniform(1, 4), rng.uniform(0, 2 * math.pi)
        tex += np.sin(2 * math.pi * (fx * x + fy * y) + phase)
    return tex / 3


def render(m: Motion, times, height: int = 240, width: int = 320, noise: float = 0.0,
           rng: np.random.Generator | None = None, window: tuple[int, int, int, int] | None = None) -> np.ndarray:
    """(len(times), H, W, 3) uint8 RGB frames of the motion at the given instants t in [0, 1].

    ``window`` = (top, left, h, w) renders only that part of the frame (a crop, at the cost of the crop).
    """
    times = np.asarray(times, np.float64)
    top, left, h, w = window or (0, 0, height, width)
    background = np.asarray(m.background, np.float32)
    base = background + 12.0 * _texture(height, width, m.texture_seed)[top:top + h, left:left + w, None]
    y, x = np.mgrid[top:top + h, left:left + w].astype(np.float32)
    short = min(height, width)
    frames = np.empty((len(times), h, w, 3), np.uint8)
    for i, t in enumerate(times):
        cx, cy, angle, size = pose_at(m, t)
        dx, dy = (x - cx * width) / (size * short), (y - cy * height) / (size * short)
        cos, sin = math.cos(angle), math.sin(angle)
        u, v = cos * dx + sin * dy, -sin * dx + cos * dy
        img = np.where(_inside(m.shape, u, v)[..., None], np.asarray(m.color, np.float32), base)
        if noise and rng is not None:
            img = img + rng.normal(0, noise, img.shape).astype(np.float32)
        frames[i] = np.clip(img, 0, 255).astype(np.uint8)
    return frames


def make_clip(label: int, rng: np.random.Generator, num_frames: int = 16, size: int = 224,
              noise: float = 4.0) -> np.ndarray:
    """A training clip as the 1x1 view sees a demo video: the centre ``size`` crop of a 4:3 frame whose
    short side is 256 * size / 224, over a random 75-100 % stretch of the motion (a 16x4 clip spans
    ~85 % of a 72-frame demo video)."""
    span = rng.uniform(0.75, 1.0)
    start = rng.uniform(0, 1 - span)
    height, width = round(256 * size / 224), round(341 * size / 224)
    window = ((height - size) // 2, (width - size) // 2, size, size)
    return render(random_motion(label, rng), start + span * np.linspace(0, 1, num_frames), height, width,
                  noise=noise, rng=rng, window=window)


def make_dataset(count: int, seed: int, num_frames: int = 16, size: int = 224) -> tuple[np.ndarray, np.ndarray]:
    """``count`` labelled clips (balanced classes): (count, T, size, size, 3) uint8 and (count,) int64."""
    rng = np.random.default_rng(seed)
    labels = np.arange(count) % len(CLASSES)
    clips = np.stack([make_clip(int(label), rng, num_frames, size) for label in labels])
    return clips, labels.astype(np.int64)


def encode_video(frames: np.ndarray, container: str = "mp4", fps: int = 25) -> bytes:
    """Encode RGB frames with PyAV: mp4 (H.264), avi (MPEG-4 part 2), webm (VP9) or mkv (H.264)."""
    codec = {"mp4": "libx264", "mkv": "libx264", "avi": "mpeg4", "webm": "libvpx-vp9"}[container]
    import av

    buffer = io.BytesIO()
    with av.open(buffer, mode="w", format={"mkv": "matroska"}.get(container, container)) as out:
        stream = out.add_stream(codec, rate=fps)
        stream.height, stream.width = frames.shape[1:3]
        stream.pix_fmt = "yuv420p"
        if codec == "libx264":
            stream.options = {"crf": "18", "preset": "veryfast"}
        elif codec == "mpeg4":
            stream.bit_rate = 4_000_000
        for frame in frames:
            out.mux(stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")))
        out.mux(stream.encode())
    return buffer.getvalue()


def warmup_video(num_frames: int, short_side: int) -> bytes:
    """A tiny mp4 a server decodes before it reports ready: ``num_frames`` frames of moving stripes (a video
    without motion is refused as a still image), ``short_side`` high, 4:3."""
    frames = np.zeros((num_frames, short_side, short_side * 4 // 3 // 2 * 2, 3), np.uint8)
    for t in range(num_frames):
        frames[t, :, t % 8::8] = 255
    return encode_video(frames, "mp4")


def make_video(label: int, seed: int, num_frames: int = 72, container: str = "mp4",
               height: int = 240, width: int = 320) -> bytes:
    """An encoded demo video of class ``label`` (72 frames at 25 fps: longer than a 16x4 clip)."""
    motion = random_motion(label, np.random.default_rng(seed))
    return encode_video(render(motion, np.linspace(0, 1, num_frames), height, width), container)
