"""The ``onnxruntime`` backend: the project's ONNX export (``squeezetime.export.onnx``) run by ONNX Runtime (CPU).

The exported graph takes the uint8 clip and normalises it itself (``(x - mean) / std`` and the time fold of
``squeeze_time``, the DataConfig's mean and std), so a call hands ONNX Runtime the decoder's bytes, a quarter
of the float32 tensor. Its positional embeddings are fixed for one image size: one ONNX file per crop size,
exported on first use (the DataConfig's default crop at build) and cached on disk (``engine_cache``; the
export of the full k400 network takes about a minute here). float32 only; intra-op threads follow
``torch.get_num_threads()`` (what ``squeezetime.load(threads=)`` sets).
"""
from __future__ import annotations

import copy
import logging
import threading
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from ..errors import InputError
from . import engine_cache
from .base import BackendError

logger = logging.getLogger("squeezetime")


def _with_data_config(model):
    """A shallow copy whose ``config`` carries the DataConfig's mean and std (what the exported graph bakes in)."""
    dc = model.data_config
    view = copy.copy(model)
    view.config = {**(model.config or {}), "mean": list(dc.mean), "std": list(dc.std)}
    return view


def cpu_model(model):
    """``model`` in eval mode on the CPU (a copy when it is elsewhere: the caller's model stays where it is)."""
    if next(model.parameters()).device.type != "cpu":
        model = copy.deepcopy(model).cpu()
    return model.eval()


def default_image_size(model) -> int:
    dc = model.data_config
    return dc.view(dc.default_views).crop_size


def onnx_cached(model, image_size: int) -> bool:
    return engine_cache.is_cached("onnx", engine_cache.engine_key(model, image_size, "onnx"), "model.onnx")


def onnx_file(model, image_size: int) -> tuple[Path, bool]:
    """The cached ONNX export of ``model`` at ``image_size`` (path, whether it was already there)."""
    from ..export.onnx import export_onnx

    key = engine_cache.engine_key(model, image_size, "onnx")

    def write(folder: Path) -> None:
        logger.info("squeezetime: exporting the network to ONNX (%dx%d) into the cache", image_size, image_size)
        export_onnx(_with_data_config(model), folder / "model.onnx", image_size=image_size)
    return engine_cache.cached("onnx", key, "model.onnx", write)


class OnnxRuntimeBackend:
    name = "onnxruntime"

    def __init__(self, model, device: torch.device, threads: int):
        import onnxruntime

        self.device, self.dtype, self.threads = device, torch.float32, threads
        self.version = onnxruntime.__version__
        self._model, self._sessions, self._lock = model, {}, threading.Lock()
        self.from_cache = self._session(default_image_size(model))[1]

    def _session(self, image_size: int):
        """(session, whether its ONNX file came from the cache) for square clips of ``image_size``."""
        with self._lock:
            if image_size not in self._sessions:
                from ..export.onnx import onnx_session

                path, hit = onnx_file(self._model, image_size)
                self._sessions[image_size] = (onnx_session(path, threads=self.threads), hit)
            return self._sessions[image_size]

    def logits(self, clips: Tensor) -> Tensor:
        n, _, h, w, _ = clips.shape
        if h != w:
            raise InputError(f"the onnxruntime backend takes square clips, got {h}x{w}")
        session = self._session(h)[0]
        array = np.ascontiguousarray(clips.cpu().numpy(), dtype=np.uint8)
        return torch.from_numpy(session.run(["LOGITS"], {"CLIP": array})[0])

    def __repr__(self) -> str:
        return f"OnnxRuntimeBackend(onnxruntime {self.version}, cpu, float32, {self.threads} threads)"


def build(model, device: torch.device, dtype: torch.dtype) -> OnnxRuntimeBackend:
    if device.type != "cpu":
        raise BackendError(f"the onnxruntime backend runs on the CPU only, not {device}")
    if dtype != torch.float32:
        raise BackendError(f"the onnxruntime backend runs float32 only, not {str(dtype).replace('torch.', '')}")
    try:
        import onnxruntime  # noqa: F401
    except ImportError as e:
        raise BackendError(f"the onnxruntime backend needs onnxruntime (pip install onnxruntime onnx onnxscript): {e}") from e
    return OnnxRuntimeBackend(cpu_model(model), device, torch.get_num_threads())
