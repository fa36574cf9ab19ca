"""One TorchServe request -> uint8 clips + options, or a 400 message. No TorchServe import: unit-testable.

This module only takes TorchServe's transport apart; what the values may be (views, top-k, clip shapes,
sizes) is checked by ``squeezetime.serving.requests``, as for Triton. What a request may carry (TorchServe
hands the handler one dict per request, ``{name: value}``):

* the body of ``POST /predictions/<model>`` (name ``body``) or a multipart part (any name, e.g. ``data``),
  or a gRPC ``input`` map entry (any name): an encoded video (mp4/avi/webm/mkv...) or a ``.npy`` file of
  uint8 clips ``(T, crop, crop, 3)`` / ``(N, T, crop, crop, 3)``;
* options ``views`` (``1x1`` | ``10x3``, videos only) and ``topk`` (int >= 1): as HTTP headers
  ``X-SqueezeTime-Views`` / ``X-SqueezeTime-Topk`` (handy with a raw body), multipart fields, gRPC input
  entries, a JSON part/entry named ``options``, or a JSON body
  ``{"video": "<base64>", "views": "10x3", "topk": 3}`` (``clips`` instead of ``video`` for base64
  ``.npy`` bytes). TorchServe does not pass query parameters of ``/predictions`` to handlers. KServe's v1
  envelope (``service_envelope=kserve``) hands each of ``{"instances": [...]}`` over as decoded JSON: an
  instance ``{"video": "<base64>", "topk": 3}`` or ``{"data": {"video": ..., "topk": 3}}``.
"""
from __future__ import annotations

import base64
import binascii
import io
import json
from dataclasses import dataclass, field

import numpy as np

from ...classifier import Classifier
from ..metrics import Stopwatch
from ..requests import (RequestError, RequestLimits, check_clip_array, parse_topk, parse_views, text_value,
                        video_clips)

NPY_MAGIC = b"\x93NUMPY"
OPTION_KEYS = ("views", "topk")
JSON_OPTION_PARTS = ("options", "json", "parameters")
BASE64_KEYS = ("video", "clips", "data")
HEADER_PREFIX = "x-squeezetime-"


@dataclass
class Parsed:
    clips: np.ndarray  # uint8 (V, T, H, W, 3)
    topk: int
    views: str | None  # None for clips given as .npy
    kind: str  # "video" | "clips"
    options: dict = field(default_factory=dict)


def _json_object(value, what: str) -> dict:
    if isinstance(value, dict):
        return value
    try:
        obj = json.loads(text_value(value, what))
    except (json.JSONDecodeError, RequestError) as e:
        raise RequestError(f"{what} is not valid JSON ({e})") from e
    if not isinstance(obj, dict):
        raise RequestError(f"{what} must be a JSON object, got {type(obj).__name__}")
    return obj


def _b64(value, key: str) -> bytes:
    if not isinstance(value, str):
        raise RequestError(f"JSON field {key!a} must be a base64 string")
    try:
        return base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError) as e:
        raise RequestError(f"JSON field {key!a} is not valid base64 ({e})") from e


def header_options(headers: dict | None) -> dict:
    """``X-SqueezeTime-Views: 10x3`` / ``X-SqueezeTime-Topk: 3`` request headers -> options."""
    options = {}
    for key, value in (headers or {}).items():
        lowered = key.decode("latin-1") if isinstance(key, bytes) else str(key)
        lowered = lowered.lower()
        if lowered.startswith(HEADER_PREFIX) and isinstance(value, (str, bytes)):
            name = lowered[len(HEADER_PREFIX):]
            if name in OPTION_KEYS:
                options[name] = text_value(value, f"header {name}")
    return options


def split_request(request: dict, headers: dict | None = None) -> tuple[bytes | None, dict]:
    """TorchServe's ``{name: value}`` (+ the request's headers) -> (payload bytes or None, options)."""
    if not isinstance(request, dict):
        raise RequestError(f"unexpected request of type {type(request).__name__}")
    payloads: list[tuple[str, bytes]] = []
    options: dict = header_options(headers)
    for key, value in request.items():
        lowered = str(key).lower()
        if lowered in OPTION_KEYS:  # a JSON number stays a number (KServe's envelope passes decoded JSON)
            number = isinstance(value, (int, float)) and not isinstance(value, bool)
            options[lowered] = value if number else text_value(value, lowered)
        elif lowered in BASE64_KEYS and lowered != "data" and isinstance(value, str):  # {"video": "<base64>"}
            payloads.append((lowered, _b64(value, lowered)))
        elif lowered in JSON_OPTION_PARTS:
            options.update(_json_object(value, f"part {key!a}"))
        elif isinstance(value, dict):  # a JSON body, already decoded by TorchServe
            for k, v in value.items():
                if k in BASE64_KEYS:
                    payloads.append((k, _b64(v, k)))
                else:
                    options[k] = v
        elif isinstance(value, (list, int, float)):
            raise RequestError(f"part {key!a}: expected a video, .npy clips or a JSON object, "
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
    unknown = sorted(str(k) for k in set(options) - set(OPTION_KEYS))
    if unknown:
        raise RequestError(f"unknown option(s) {ascii(unknown)}; known: {list(OPTION_KEYS)}")
    if len(payloads) > 1:
        raise RequestError(f"one video or clip array per request, got {len(payloads)} parts "
                           f"({ascii(', '.join(str(k) for k, _ in payloads))})")
    return (payloads[0][1] if payloads else None), options


def load_npy_clips(data: bytes, classifier: Classifier, limits: RequestLimits) -> np.ndarray:
    try:
        array = np.load(io.BytesIO(data), allow_pickle=False)
    except (ValueError, OSError, EOFError) as e:
        raise RequestError(f"not a readable .npy array ({e})") from e
    return check_clip_array(array, classifier, limits)


def parse_request(request: dict, classifier: Classifier, *, headers: dict | None = None,
                  limits: RequestLimits = RequestLimits(), default_views: str | None = None,
                  default_topk: int = 5, stopwatch: Stopwatch | None = None) -> Parsed:
    """Validate one request completely (decoding its video) or raise ``RequestError``/``SqueezeTimeError``.
    ``stopwatch`` times the decode."""
    data, options = split_request(request, headers)
    topk = parse_topk(options.get("topk"), default_topk)
    if data is None:
        raise RequestError("no video or clips in the request (send the file as the body, a multipart "
                           "part, or base64 in a JSON field 'video'/'clips')")
    if len(data) == 0:
        raise RequestError("empty request body: send an encoded video or .npy clips")
    views = parse_views(options.get("views"), classifier, default_views)  # also for clips: refuse unknown names
    if data.startswith(NPY_MAGIC):
        return Parsed(load_npy_clips(data, classifier, limits), topk, None, "clips", options)
    return Parsed(video_clips(classifier, data, views, limits, stopwatch=stopwatch), topk, views, "video", options)
