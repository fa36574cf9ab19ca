"""Triton python backend, model "squeezetime_video": VIDEO (encoded file) [+ VIEWS, TOPK] -> LABELS, SCORES.

Decodes and samples on the server, then sends the clips to "squeezetime" through BLS. The code lives in the
installed package (squeezetime.serving.triton.video_model); this file is what Triton loads.
"""
import os
import sys

# `squeezetime serve` from a source checkout names it here (the stub's embedded Python ignores PYTHONPATH).
if os.environ.get("SQUEEZETIME_PYTHONPATH") and os.environ["SQUEEZETIME_PYTHONPATH"] not in sys.path:
    sys.path.insert(0, os.environ["SQUEEZETIME_PYTHONPATH"])

from squeezetime.serving.triton.video_model import VideoModel as TritonPythonModel  # noqa: E402,F401
