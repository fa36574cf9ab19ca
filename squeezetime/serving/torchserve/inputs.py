"""One TorchServe request -> uint8 clips + options, or a 400 message. No TorchServe import: unit-testable.

What a request may carry (TorchServe hands the handler one dict per request, ``{name: value}``):

* the body of ``POST /predictions/<model>`` (name ``body``) or a multipart part (any name, e.g. ``data``),
  or a gRPC ``input`` map entry (any name): an encoded video (mp4/avi/webm/mkv...) or a ``.npy`` file of
  uint8 clips ``(16, 224, 224, 3)`` / ``(N, 16, 224, 224, 3)``;
* options ``views`` (``1x1`` | ``10x3``, videos only) and ``topk`` (int >= 1): as HTTP headers
  ``X-SqueezeTime-Views`` / ``X-SqueezeTime-Topk`` (handy with a raw body), multipart fields, gRPC input
  entries, a JSON part/entry named ``options``, or a JSON body
  ``{"video": "<base64>", "views": "10x3", "topk": 3}`` (``clips`` instead of ``video`` for base64
  ``.npy`` bytes). TorchServe does not pass query parameters of ``/predictions`` to handlers.
"""
from __future__ import annotations

import base64
import binascii
import io
import json
from dataclasses import dataclass, field

import numpy as np

from ...errors import InputError, SqueezeTimeError
from ...video import VIEWS, sample_clips

NPY_MAGIC = b"\x93NUMPY"
OPTION_KEYS = ("views", "topk")
JSON_OPTION_PARTS = ("options", "json", "parameters")
BASE64_KEYS = ("video", "clips", "data")
HEADER_PREFIX = "x-squeezetime-"


class RequestError(SqueezeTimeError, ValueError):
    """A request the handler rejects with HTTP 400; the message says why."""


@dataclass
class Parsed:
    clips: np.ndarray  # uint8 (V, T, H, W, 3)
    topk: int
    views: str | None  # None for clips given as .npy
    kind: str  # "video" | "clips"
    options: dict = field(default_factory=dict)


def _text(value) -> str:
    if isinstance(value, (bytes, bytearray, memoryview)):
        try:
            return bytes(value).decode("utf-8").strip()
        except UnicodeDecodeError as e:
            raise RequestError("option values must be UTF-8 text") from e
    return str(value).strip()


def _json_object(value, what: str) -> dict:
    if isinstance(value, dict):
        return value
    try:
        obj = json.loads(_text(value))
    except (json.JSONDecodeError, RequestError) as e:
        raise RequestError(f"{what} is not valid JSON ({e})") from e
    if not isinstance(obj, dict):
        raise RequestError(f"{what} must be a JSON object, got {type(obj).__name__}")
    return obj


def _b64(value, key: str) -> bytes:
    if not isinstance(value, str):
        raise RequestError(f"JSON field {key!r} must be a base64 string")
    try:
        return base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError) as e:
        raise RequestError(f"JSON field {key!r} is not valid base64 ({e})") from e


def header_options(headers: dict | None) -> dict:
    """``X-SqueezeTime-Views: 10x3`` / ``X-SqueezeTime-Topk: 3`` request headers -> options."""
    options = {}
    for key, value in (headers or {}).items():
        lowered = str(key).lower()
        if lowered.startswith(HEADER_PREFIX) and isinstance(value, (str, bytes)):
            name = lowered[len(HEADER_PREFIX):]
            if name in OPTION_KEYS:
                options[name] = _text(value)
    return options


def split_request(request: dict, headers: dict | None = None) -> tuple[bytes | None, dict]:
    """TorchServe's ``{name: value}`` (+ the request's headers) -> (payload bytes or None, options)."""
    if not isinstance(request, dict):
        raise RequestError(f"unexpected request of type {type(request).__name__}")
    payloads: list[tuple[str, bytes]] = []
    options: dict = header_options(headers)
    for key, value in request.items():
        lowered = str(key).lower()
        if lowered in OPTION_KEYS:
            options[lowered] = _text(value)
        elif lowered in JSON_OPTION_PARTS:
            options.update(_json_object(value, f"part {key!r}"))
        elif isinstance(value, dict):  # a JSON body, already decoded by TorchServe
            for k, v in value.items():
                if k in BASE64_KEYS:
                    payloads.append((k, _b64(v, k)))
                else:
                    options[k] = v
        elif isinstance(value, (list, int, float)):
            raise RequestError(f"part {key!r}: expected a video, .npy clips or a JSON object, "
                               f"got JSON {type(value).__name__}")
        else:
            data = value.encode("utf-8") if isinstance(value, str) else bytes(value)
            if data[:1] == b"{" and lowered in ("body", "data"):  # JSON sent without its content type
                try:
                    obj = json.loads(data.decode("utf-8"))
                except (UnicodeDecodeError, json.JSONDecodeError):
                    obj = None
                if isinstance(obj, dict):
                    sub_payload, sub_options = split_request({"_json": obj})
                    options.update(sub_options)
                    if sub_payload is not None:
                        payloads.append((key, sub_payload))
                    continue
            payloads.append((key, data))
    unknown = sorted(set(options) - set(OPTION_KEYS))
    if unknown:
        raise RequestError(f"unknown option(s) {unknown}; known: {list(OPTION_KEYS)}")
    if len(payloads) > 1:
        raise RequestError(f"one video or clip array per request, got {len(payloads)} parts "
                           f"({', '.join(k for k, _ in payloads)})")
    return (payloads[0][1] if payloads else None), options


def parse_topk(value, default: int) -> int:
    if value is None:
        return default
    if isinstance(value, bool):
        raise RequestError(f"topk must be an integer >= 1, got {value!r}")
    try:
        k = int(value) if not isinstance(value, float) or value.is_integer() else None
    except (TypeError, ValueError):
        k = None
    if k is None or k < 1:
        raise RequestError(f"topk must be an integer >= 1, got {value!r}")
    return k


def parse_views(value, default: str) -> str:
    views = default if value is None else str(value)
    if views not in VIEWS:
        raise RequestError(f"unknown views {views!r}; choose one of {sorted(VIEWS)}")
    return views


def load_npy_clips(data: bytes, num_frames: int, crop: int, max_clips: int) -> np.ndarray:
    try:
        array = np.load(io.BytesIO(data), allow_pickle=False)
    except (ValueError, OSError, EOFError) as e:
        raise RequestError(f"not a readable .npy array ({e})") from e
    if array.dtype != np.uint8:
        raise RequestError(f"clips must be uint8 RGB frames, got dtype {array.dtype}")
    shape = tuple(array.shape)
    if array.ndim == 4:
        array = array[None]
    want = (num_frames, crop, crop, 3)
    if array.ndim != 5 or tuple(array.shape[1:]) != want:
        raise RequestError(f"clips must have shape {want} or (N, {', '.join(map(str, want))}), "
                           f"got {shape}")
    if not 1 <= array.shape[0] <= max_clips:
        raise RequestError(f"a request may carry 1 to {max_clips} clips, got {array.shape[0]}")
    return np.ascontiguousarray(array)


def parse_request(request: dict, *, headers: dict | None = None, num_frames: int = 16, crop: int = 224, default_views: str = "1x1",
                  default_topk: int = 5, max_clips: int = 30) -> Parsed:
    """Validate one request completely (decoding its video) or raise ``RequestError``/``SqueezeTimeError``."""
    data, options = split_request(request, headers)
    topk = parse_topk(options.get("topk"), default_topk)
    if data is None:
        raise RequestError("no video or clips in the request (send the file as the body, a multipart "
                           "part, or base64 in a JSON field 'video'/'clips')")
    if len(data) == 0:
        raise RequestError("empty request body: send an encoded video or .npy clips")
    if data.startswith(NPY_MAGIC):
        clips = load_npy_clips(data, num_frames, crop, max_clips)
        if "views" in options:
            parse_views(options["views"], default_views)  # still reject unknown names
        return Parsed(clips, topk, None, "clips", options)
    views = parse_views(options.get("views"), default_views)
    try:
        clips = sample_clips(data, views, num_frames)
    except SqueezeTimeError:
        raise
    except Exception as e:  # a decoder failure the video layer did not classify: still this request's fault
        raise InputError(f"video could not be decoded ({type(e).__name__}: {e})") from e
    return Parsed(clips, topk, views, "video", options)
