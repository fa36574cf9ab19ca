"""Triton python backend, model "squeezetime": CLIP uint8 [B, 16, 224, 224, 3] -> LOGITS, PROBS.

The code lives in the installed package (squeezetime.serving.triton.clip_model), so that the server's Python
environment needs only `squeezetime` installed; this file is what Triton loads.
"""
import os
import sys

# `squeezetime serve` from a source checkout names it here (the stub's embedded Python ignores PYTHONPATH).
if os.environ.get("SQUEEZETIME_PYTHONPATH") and os.environ["SQUEEZETIME_PYTHONPATH"] not in sys.path:
    sys.path.insert(0, os.environ["SQUEEZETIME_PYTHONPATH"])

from squeezetime.serving.triton.clip_model import ClipModel as TritonPythonModel  # noqa: E402,F401
