"""The ``openvino`` backend: the network converted to OpenVINO (CPU plugin), cached on disk.

Converted from the project's ONNX export (``onnxruntime.onnx_file``, itself cached), not from the torch
module: on this machine ``openvino.convert_model`` of the demo network took 5 s from the ONNX file (after a
33 s export that the onnxruntime backend shares) against 49 s by tracing the torch module and 60 s from the
ExportedProgram, for the same numbers (relative L2 to eager 1-2e-6). The converted model is saved as
OpenVINO IR (``model.xml`` / ``model.bin``) under ``$SQUEEZETIME_CACHE/openvino/<key>`` (key: weights,
normalisation, image size, torch, squeezetime and openvino versions; the IR keeps float32 weights, so float32
and bfloat16 share it), so a second build reads the IR and converts nothing; OpenVINO's own compiled-blob
cache (``CACHE_DIR``, keyed by OpenVINO with the precision) sits in the same folder.

Like the onnxruntime backend it takes the uint8 clip (normalisation is in the graph). dtype: float32, or
bfloat16 through ``INFERENCE_PRECISION_HINT=bf16``; a CPU without native bf16 (no AVX512_BF16 / AMX, e.g. an
AVX2-only one) has no ``BF16`` in OpenVINO's ``OPTIMIZATION_CAPABILITIES`` and OpenVINO then runs float32:
the backend says so once and reports ``dtype`` as what OpenVINO actually runs. Threads: ``INFERENCE_NUM_THREADS``
= ``torch.get_num_threads()``, ``PERFORMANCE_HINT=LATENCY`` (one stream, every thread on one request).
"""
from __future__ import annotations

import logging
import threading
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from ..errors import InputError
from . import engine_cache
from .base import BackendError
from .onnxruntime import cpu_model, default_image_size, onnx_file

logger = logging.getLogger("squeezetime")

HINTS = {torch.float32: "f32", torch.bfloat16: "bf16"}
PRECISIONS = {"f32": torch.float32, "bf16": torch.bfloat16, "f16": torch.float16}


def native_bf16(core) -> bool:
    return "BF16" in core.get_property("CPU", "OPTIMIZATION_CAPABILITIES")


def _ir_key(model, image_size: int) -> str:
    # the IR holds float32 weights whatever the dtype (compress_to_fp16=False): one IR serves float32 and bfloat16,
    # the precision is chosen at compile time (and keys OpenVINO's own compiled-blob cache)
    return engine_cache.engine_key(model, image_size, "openvino")


def ir_cached(model, image_size: int) -> bool:
    return engine_cache.is_cached("openvino", _ir_key(model, image_size), "model.xml")


def ir_file(model, image_size: int) -> tuple[Path, bool]:
    """The cached OpenVINO IR of ``model`` at ``image_size`` (path to model.xml, whether it was already there)."""
    import openvino as ov

    key = _ir_key(model, image_size)

    def write(folder: Path) -> None:
        onnx_path, _ = onnx_file(model, image_size)
        logger.info("squeezetime: converting the network to OpenVINO IR (%dx%d) into the cache", image_size, image_size)
        ov.save_model(ov.convert_model(onnx_path), folder / "model.xml", compress_to_fp16=False)
    return engine_cache.cached("openvino", key, "model.xml", write)


class OpenVinoBackend:
    name = "openvino"

    def __init__(self, model, device: torch.device, dtype: torch.dtype, threads: int):
        import openvino as ov

        self.device, self.threads, self.version = device, threads, ov.__version__
        self.requested = dtype
        self._core, self._model = ov.Core(), model
        self._compiled, self._lock, self._local = {}, threading.Lock(), threading.local()
        compiled, self.from_cache = self._compiled_for(default_image_size(model))
        self.dtype = PRECISIONS.get(compiled.get_property("INFERENCE_PRECISION_HINT").to_string(), dtype)
        if dtype != self.dtype:
            logger.warning("squeezetime: this CPU has no native bfloat16 (OpenVINO's capabilities: %s); the openvino "
                           "backend runs %s", self._core.get_property("CPU", "OPTIMIZATION_CAPABILITIES"),
                           str(self.dtype).replace("torch.", ""))

    def _compiled_for(self, image_size: int):
        """(compiled model, whether its IR came from the cache) for square clips of ``image_size``."""
        with self._lock:
            if image_size not in self._compiled:
                path, hit = ir_file(self._model, image_size)
                config = {"INFERENCE_PRECISION_HINT": HINTS[self.requested], "PERFORMANCE_HINT": "LATENCY",
                          "INFERENCE_NUM_THREADS": self.threads, "CACHE_DIR": str(path.parent / "compiled")}
                self._compiled[image_size] = (self._core.compile_model(str(path), "CPU", config), hit)
            return self._compiled[image_size]

    def _request(self, image_size: int):
        """This thread's infer request for ``image_size`` (an infer request serves one call at a time)."""
        requests = getattr(self._local, "requests", None)
        if requests is None:
            requests = self._local.requests = {}
        if image_size not in requests:
            requests[image_size] = self._compiled_for(image_size)[0].create_infer_request()
        return requests[image_size]

    def logits(self, clips: Tensor) -> Tensor:
        n, _, h, w, _ = clips.shape
        if h != w:
            raise InputError(f"the openvino backend takes square clips, got {h}x{w}")
        request = self._request(h)
        request.infer({0: np.ascontiguousarray(clips.cpu().numpy(), dtype=np.uint8)})
        return torch.from_numpy(request.get_output_tensor(0).data.copy())

    def __repr__(self) -> str:
        return (f"OpenVinoBackend(openvino {self.version.split('-')[0]}, cpu, "
                f"{str(self.dtype).replace('torch.', '')}, {self.threads} threads)")


def build(model, device: torch.device, dtype: torch.dtype) -> OpenVinoBackend:
    if device.type != "cpu":
        raise BackendError(f"the openvino backend runs on the CPU only here, not {device}")
    if dtype not in HINTS:
        raise BackendError(f"the openvino backend runs float32 or bfloat16, not {str(dtype).replace('torch.', '')}")
    try:
        import openvino  # noqa: F401
    except ImportError as e:
        raise BackendError(f"the openvino backend needs openvino (pip install openvino): {e}") from e
    return OpenVinoBackend(cpu_model(model), device, dtype, torch.get_num_threads())
