"""Triton python backend, model "squeezetime_timeline" (decoupled): VIDEO [+ STRIDE, TOPK] -> one response per
window (START, END, LABELS, SCORES), streamed as windows are scored.

The code lives in the installed package (squeezetime.serving.triton.timeline_model); this file is what Triton
loads.
"""
import os
import sys

# `squeezetime serve` from a source checkout names it here (the stub's embedded Python ignores PYTHONPATH).
if os.environ.get("SQUEEZETIME_PYTHONPATH") and os.environ["SQUEEZETIME_PYTHONPATH"] not in sys.path:
    sys.path.insert(0, os.environ["SQUEEZETIME_PYTHONPATH"])

from squeezetime.serving.triton.timeline_model import TimelineModel as TritonPythonModel  # noqa: E402,F401
