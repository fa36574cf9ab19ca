"""What a client may ask of a server, checked once for every transport (Triton, TorchServe).

Transports take their fields apart (gRPC tensors, HTTP headers, multipart parts, JSON) and hand the values
here: views, top-k, strides, clip arrays, video sizes. Every refusal is a ``RequestError`` (``TooLargeError`` for
an upload over the size limit) whose message is plain ASCII (client text is echoed with escapes, never raw), safe
in an HTTP status line or a gRPC status; its type carries the refusal reason (``squeezetime.errors.Refusal``).
"""
from __future__ import annotations

import math
import re
from contextlib import nullcontext
from dataclasses import dataclass

import numpy as np

from ..classifier import Classifier
from ..errors import InputError, Refusal, SqueezeTimeError, VideoError
from ..video import DecodeBudget
from .metrics import Stopwatch

DEFAULT_MAX_VIDEO_BYTES = 64 * 1024 * 1024
DEFAULT_MAX_CLIPS = 30
MAX_MESSAGE = 400
_UNPRINTABLE = re.compile(r"[^\x20-\x7e]")


class RequestError(InputError):
    """A request the server refuses (HTTP 400, gRPC INVALID_ARGUMENT); the message says why."""


class VideoTooLarge(RequestError):
    """An upload over the server's ``max_video_bytes``."""
    refusal = Refusal.TOO_LARGE


@dataclass(frozen=True)
class RequestLimits:
    max_video_bytes: int = DEFAULT_MAX_VIDEO_BYTES   # largest encoded video accepted
    max_clips: int = DEFAULT_MAX_CLIPS               # clips one request may carry (arrays sent as clips)

    def __post_init__(self):
        if self.max_video_bytes < 1 or self.max_clips < 1:
            raise InputError("request limits must be >= 1")


BUDGET_SETTINGS = {"max_pixels": int, "max_frames": int, "max_decode_seconds": float, "allow_still_images": bool,
                   "max_decoded_frames": int, "max_duration": float, "max_pixel_rate": float}


def setting_flag(value, default: bool = False) -> bool:
    """An on/off server setting given as a bool or text ("1", "true", "yes", "on"); empty -> ``default``."""
    if isinstance(value, bool):
        return value
    if value is None or str(value).strip() == "":
        return default
    return str(value).strip().lower() in ("1", "true", "yes", "on")


def decode_budget(settings: dict) -> DecodeBudget:
    """A server's ``DecodeBudget`` from its settings (Triton parameters, TorchServe handler settings): the keys of
    ``BUDGET_SETTINGS``, as values or text; missing ones keep the defaults."""
    values = {}
    for key, kind in BUDGET_SETTINGS.items():
        raw = settings.get(key)
        if raw is None or raw == "":
            continue
        if kind is bool:
            values[key] = setting_flag(raw)
        else:
            values[key] = kind(raw)
    if "max_decode_seconds" in values:
        values["max_seconds"] = values.pop("max_decode_seconds")
    return DecodeBudget(**values)


def ascii_message(text: str, limit: int = MAX_MESSAGE) -> str:
    """``text`` as printable ASCII (anything else escaped), at most ``limit`` characters."""
    safe = _UNPRINTABLE.sub(lambda m: m.group(0).encode("unicode_escape").decode("ascii")
                            if m.group(0) not in "\n\t" else " ", str(text))
    return safe if len(safe) <= limit else safe[:limit - 3] + "..."


def text_value(value, name: str) -> str:
    """A text field sent as str or bytes (bytes must be UTF-8)."""
    if isinstance(value, np.ndarray) and value.size == 1:
        value = value.reshape(-1)[0]
    if isinstance(value, (bytes, bytearray, memoryview, np.bytes_)):
        try:
            return bytes(value).decode("utf-8").strip()
        except UnicodeDecodeError:
            raise RequestError(f"{name} is not UTF-8 text") from None
    if isinstance(value, str):
        return value.strip()
    raise RequestError(f"{name} must be text, got {type(value).__name__}")


def parse_views(value, classifier: Classifier, default: str | None = None, field: str = "views") -> str:
    """``None`` -> the default views; else a name of the model's views table. ``field``: the transport's name
    for it, used in messages."""
    if value is None:
        return default or classifier.data_config.default_views
    name = text_value(value, field)
    if name not in classifier.data_config.views:
        raise RequestError(f"unknown {field} {name[:40]!a}; choose one of {sorted(classifier.data_config.views)}")
    return name


def parse_topk(value, default: int, field: str = "topk") -> int:
    """An integer >= 1 given as a number or text; ``None`` -> ``default``."""
    if value is None:
        return default
    if isinstance(value, np.ndarray) and value.size == 1:
        value = value.reshape(-1)[0]
    if isinstance(value, (str, bytes, bytearray, np.bytes_)):
        value = text_value(value, field)
    k = None
    if isinstance(value, (int, np.integer)) and not isinstance(value, (bool, np.bool_)):
        k = int(value)
    elif isinstance(value, (float, np.floating)) and float(value).is_integer():
        k = int(value)
    elif isinstance(value, str) and re.fullmatch(r"[+]?\d{1,9}", value):
        k = int(value)
    if k is None or k < 1:
        raise RequestError(f"{field} must be an integer >= 1, got {str(value)[:40]!a}")
    return k


def parse_stride(value, default: float, field: str = "STRIDE") -> float:
    """Seconds between timeline windows: a finite number > 0, as a number or text; ``None`` -> ``default``."""
    if value is None:
        return default
    if isinstance(value, (str, bytes, bytearray, np.bytes_)):
        value = text_value(value, field)
    try:
        stride = float(value)
    except (TypeError, ValueError):
        raise RequestError(f"{field} must be a number of seconds") from None
    if not math.isfinite(stride) or stride <= 0:
        raise RequestError(f"{field} must be a number of seconds > 0, got {stride}")
    return stride


def check_clip_array(array, classifier: Classifier, limits: RequestLimits) -> np.ndarray:
    """uint8 clips (N, T, crop, crop, 3) or one (T, crop, crop, 3) of the model's shape, 1..max_clips of them."""
    if not isinstance(array, np.ndarray):
        raise RequestError(f"clips must be an array, got {type(array).__name__}")
    try:
        clips = classifier.check_clips(array)
    except InputError as e:
        raise RequestError(str(e)) from None
    if not 1 <= clips.shape[0] <= limits.max_clips:
        raise RequestError(f"a request may carry 1 to {limits.max_clips} clips, got {clips.shape[0]}")
    return np.ascontiguousarray(clips.numpy())


def check_video_size(nbytes: int, limits: RequestLimits, setting: str = "max_video_bytes") -> None:
    if nbytes == 0:
        raise RequestError("empty video: 0 bytes")
    if nbytes > limits.max_video_bytes:
        raise VideoTooLarge(f"video is {nbytes} bytes, over this server's limit of {limits.max_video_bytes} bytes "
                           f"(setting {setting})")


def video_clips(classifier: Classifier, data: bytes, views: str, limits: RequestLimits,
                should_stop=None, stopwatch: Stopwatch | None = None) -> np.ndarray:
    """An uploaded video -> its clips; any failure to decode it is the client's (``VideoError``).
    ``should_stop``: the request's cancellation check (``Classifier.clips``); ``stopwatch``: times the decode."""
    check_video_size(len(data), limits)
    try:
        with stopwatch.running() if stopwatch is not None else nullcontext():
            return classifier.clips(data, views, should_stop=should_stop)
    except SqueezeTimeError:
        raise
    except Exception as e:  # noqa: BLE001 - a decoder failure the video layer did not classify
        raise VideoError(f"video could not be decoded ({type(e).__name__}: {e})") from e


__all__ = ["BUDGET_SETTINGS", "DEFAULT_MAX_CLIPS", "DEFAULT_MAX_VIDEO_BYTES", "RequestError", "RequestLimits",
           "VideoTooLarge", "ascii_message", "check_clip_array", "check_video_size", "decode_budget", "parse_stride",
           "parse_topk", "parse_views", "setting_flag", "text_value", "video_clips"]
