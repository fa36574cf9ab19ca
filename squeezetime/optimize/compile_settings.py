"""The inductor settings of our ``torch.compile`` paths, scoped instead of set for the whole process.

``torch.compile`` compiles lazily, at the first call with a new input shape, so the settings must be active
around those calls, not around ``torch.compile(...)`` itself. ``inductor_settings()`` is a context manager
(``torch._inductor.config.patch``, which restores the previous values on exit) for code that knows where the
compiling calls are (a benchmark's warm-up); ``compile_with_settings`` wraps a compiled function so that every
call, and so every recompile, runs inside it, for modules handed to callers (``optimize(compile=True)``).
"""
from __future__ import annotations

from contextlib import AbstractContextManager

import torch

# freezing: parameters become constants, so inductor folds the weights and prepacks them for oneDNN / cuDNN
INDUCTOR_SETTINGS = {"freezing": True}


def inductor_settings() -> AbstractContextManager:
    """Inductor configured as our compiled paths want it, until the ``with`` block ends."""
    import torch._inductor.config as inductor_config

    return inductor_config.patch(INDUCTOR_SETTINGS)


def compile_with_settings(fn, **compile_options):
    """``torch.compile(fn, **compile_options)`` whose every call runs inside ``inductor_settings()``."""
    compiled = torch.compile(fn, **compile_options)

    def call(*args, **kwargs):
        with inductor_settings():
            return compiled(*args, **kwargs)
    return call


__all__ = ["INDUCTOR_SETTINGS", "compile_with_settings", "inductor_settings"]
