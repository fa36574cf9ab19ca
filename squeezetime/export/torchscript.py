"""TorchScript (``torch.jit.trace``) of the serving graph, for Triton's libtorch backend and TorchServe.

uint8 CLIP [batch, 16, 224, 224, 3] -> (LOGITS, PROBS); the batch size stays symbolic in the trace (the
graph has no batch-dependent Python control flow), which the tests check at batch 1 and 5.
"""
from __future__ import annotations

import os
import warnings

import torch

from ..errors import ExportError
from .graph import IMAGE_SIZE, custom_ops_in, example_clip, serving_graph


def trace(model, precision: str = "fp32", image_size: int = IMAGE_SIZE) -> torch.jit.ScriptModule:
    graph = serving_graph(model, precision, image_size)
    clip = example_clip(2, getattr(model, "num_frames", 16), image_size)
    with torch.no_grad(), warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=DeprecationWarning)
        warnings.filterwarnings("ignore", category=FutureWarning)
        warnings.filterwarnings("ignore", category=torch.jit.TracerWarning)  # spatial size is fixed at export
        traced = torch.jit.trace(graph, (clip,), check_trace=False)
        traced = torch.jit.freeze(traced.eval())
    custom = sorted({n.kind() for n in traced.graph.nodes() if n.kind().startswith("squeezetime::")})
    if custom:
        raise ExportError(f"TorchScript graph calls custom operators {custom}: Triton's libtorch backend and "
                           "TorchServe would need the squeezetime extension; export the unfused model")
    return traced


def export_torchscript(model, path: str | os.PathLike, precision: str = "fp32", image_size: int = IMAGE_SIZE) -> str:
    path = os.fspath(path)
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    traced = trace(model, precision, image_size)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=DeprecationWarning)  # torch.jit is deprecated upstream
        torch.jit.save(traced, path)
    return path


def load_torchscript(path: str | os.PathLike, map_location="cpu") -> torch.jit.ScriptModule:
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=DeprecationWarning)
        return torch.jit.load(os.fspath(path), map_location=map_location)
