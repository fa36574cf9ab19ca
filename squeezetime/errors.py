"""Errors a user can act on. Each message says what was wrong with which input."""


class SqueezeTimeError(Exception):
    """Base class of the package's input errors."""


class CheckpointError(SqueezeTimeError, ValueError):
    """A file is not a SqueezeTime checkpoint, or its keys/shapes do not fit the model."""


class VideoError(SqueezeTimeError, ValueError):
    """A video cannot be decoded: unreadable, empty, truncated, or without a video stream."""


class InputError(SqueezeTimeError, ValueError):
    """A tensor/array input has the wrong shape, dtype or value range."""


class ExportError(SqueezeTimeError, RuntimeError):
    """A model cannot be exported to the asked format (e.g. custom operators the format cannot carry)."""


class ModelTypeError(SqueezeTimeError, TypeError):
    """An object that is not the kind of model the call needs."""
