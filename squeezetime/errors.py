"""Errors a user can act on. Each message says what was wrong with which input.

Each error also says why a server refuses a request that raised it: ``refusal``, a ``Refusal`` (the ``reason``
label of the ``squeezetime_rejections_total`` metric, and the status a server answers with). Servers read it with
``refusal_of``; nothing looks at message text.
"""
from __future__ import annotations

from enum import Enum


class Refusal(str, Enum):
    """Why a server answered a request with an error (metric label ``reason``)."""
    INVALID_REQUEST = "invalid_request"   # a field missing, malformed or out of range
    TOO_LARGE = "too_large"               # the upload is over max_video_bytes
    OVER_BUDGET = "over_budget"           # the video is over the decode budget
    STILL_IMAGE = "still_image"           # an image, not a video
    UNDECODABLE = "undecodable"           # not a readable video
    CANCELLED = "cancelled"               # the client cancelled or gave up
    OVERLOADED = "overloaded"             # no room for another request
    INTERNAL = "internal"                 # a failure on the server's side


class SqueezeTimeError(Exception):
    """Base class of the package's input errors."""
    refusal = Refusal.INVALID_REQUEST


class CheckpointError(SqueezeTimeError, ValueError):
    """A file is not a SqueezeTime checkpoint, or its keys/shapes do not fit the model."""


class VideoError(SqueezeTimeError, ValueError):
    """A video cannot be decoded: unreadable, empty, truncated, or without a video stream."""
    refusal = Refusal.UNDECODABLE


class BudgetError(VideoError):
    """A video over a decode budget (too many pixels, frames or seconds) or a still image."""
    refusal = Refusal.OVER_BUDGET


class StillImageError(BudgetError):
    """An image file, a one-frame video or a video without motion, where a video is wanted
    (``DecodeBudget.allow_still_images`` lets them through)."""
    refusal = Refusal.STILL_IMAGE


class DecodeCancelled(SqueezeTimeError):
    """Decoding (or scoring) was stopped because the caller's ``should_stop`` said so (the request was cancelled)."""
    refusal = Refusal.CANCELLED


class InputError(SqueezeTimeError, ValueError):
    """A tensor/array input has the wrong shape, dtype or value range."""


class OverloadedError(SqueezeTimeError):
    """A server has no room for another request now; the client may retry."""
    refusal = Refusal.OVERLOADED


class ExportError(SqueezeTimeError, RuntimeError):
    """A model cannot be exported to the asked format (e.g. custom operators the format cannot carry)."""


class ModelTypeError(SqueezeTimeError, TypeError):
    """An object that is not the kind of model the call needs."""


def refusal_of(error: BaseException) -> Refusal:
    """Why a request that raised ``error`` is refused: the error's own ``refusal``; anything that is not one of
    ours is a failure on the server's side (``INTERNAL``)."""
    if isinstance(error, SqueezeTimeError):
        return Refusal(error.refusal)
    return Refusal.INTERNAL
