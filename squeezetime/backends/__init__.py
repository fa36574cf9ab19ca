"""tensor -> model: the engines a ``Classifier`` runs its clips through, behind one small interface.

A backend takes validated uint8 clips ``(N, T, H, W, 3)`` (a CPU tensor) and returns float32 logits
``(N, classes)`` on the CPU. Which ones exist:

- ``eager``: the bit-faithful network (``squeezetime.models``), optionally cast to ``dtype``;
- ``optimized``: ``squeezetime.optimize`` (folded batch norms, fused C++/CUDA operators, oneDNN pre-packing);
  on a GPU float16 by default and replayed as CUDA graphs per batch bucket (``CudaGraphBackend``);
- ``onnxruntime``, ``openvino``: the ONNX export run by those engines (CPU), converted once and cached;
- ``int8``: an artifact of ``squeezetime quantize`` (OpenVINO, CPU).

``auto`` (the default) tries the measured order of ``auto.auto_order`` (on a GPU: ``optimized`` float16, then
``eager``) and falls back with one warning per backend that fails to build. A backend named explicitly either
works or raises ``BackendError``. New engines register a builder in ``BUILDERS``.
"""
from __future__ import annotations

import copy
import logging
from typing import Callable

import torch

from ..errors import SqueezeTimeError
from .base import Backend, BackendError, TorchBackend

logger = logging.getLogger("squeezetime")


def _eager(model, device: torch.device, dtype: torch.dtype) -> Backend:
    module = model.eval()
    if dtype != torch.float32 or next(model.parameters()).device != device:  # leave the caller's model as it is
        module = copy.deepcopy(model).to(device=device, dtype=dtype).eval()
    return TorchBackend("eager", module, device, dtype, input_dtype=dtype, data_config=model.data_config)


def _extension_for(device: torch.device) -> bool:
    """The optimized backend can be built here: on the CPU it needs the C++ extension; on a GPU it runs without
    our CUDA kernels too (PyTorch's operators in their place, inside the same CUDA graphs: slower, still far
    faster than eager), and says so once."""
    from .. import ops

    if device.type == "cpu":
        return ops.extension_available()
    if not ops.cuda_extension_available() and not _said.get("no_cuda_kernels"):
        _said["no_cuda_kernels"] = True
        logger.warning("squeezetime: the CUDA kernels are not built (%s); the GPU path runs PyTorch operators in "
                       "their place (rebuild with a CUDA toolkit: TORCH_CUDA_ARCH_LIST=... pip install "
                       "--no-build-isolation .)", ops.cuda_extension_error() or "no squeezetime._C_cuda")
    return True


_said: dict = {}


def _optimized(model, device: torch.device, dtype: torch.dtype) -> Backend:
    from .. import ops
    from ..optimize import optimize

    if not _extension_for(device):
        raise BackendError(f"the optimized backend needs the C++ extension for {device.type} "
                           f"({ops.extension_error() or 'CUDA kernels not built'})")
    if device.type == "cpu":
        from .selftest import check_onednn, OneDnnSelfTestError

        try:  # torch's private oneDNN functions that optimize drives: present and right (once per process)
            check_onednn(dtype)
        except OneDnnSelfTestError as e:
            raise BackendError(str(e)) from e
    if device.type == "cuda":
        from .base import CudaGraphBackend

        # optimise a copy on the device: the caller's model stays where it is (a model shared by other paths)
        module = optimize(copy.deepcopy(model).to(device).eval(), dtype=dtype)
        return CudaGraphBackend(module, device, dtype, model.data_config)
    module = optimize(model.to(device).eval(), dtype=dtype)  # takes float32 input, returns float32 logits
    return TorchBackend("optimized", module, device, dtype, input_dtype=torch.float32,
                        data_config=model.data_config)


def _onnxruntime(model, device: torch.device, dtype: torch.dtype) -> Backend:
    from .onnxruntime import build  # imports onnxruntime only when asked for

    return build(model, device, dtype)


def _openvino(model, device: torch.device, dtype: torch.dtype) -> Backend:
    from .openvino import build  # imports openvino only when asked for

    return build(model, device, dtype)


def _int8(artifact, device: torch.device, dtype: torch.dtype) -> Backend:
    from .int8 import Int8Artifact, Int8Backend  # imports openvino only when asked for

    if not isinstance(artifact, Int8Artifact):
        raise BackendError("the int8 backend serves an artifact of `squeezetime quantize` "
                           "(squeezetime.load(FILE)), not a float model")
    if device.type != "cpu" or dtype != torch.float32:
        raise BackendError("an int8 artifact runs on the cpu with its precision built in (leave dtype at float32)")
    return Int8Backend(artifact, torch.get_num_threads())


BUILDERS: dict[str, Callable[..., Backend]] = {"eager": _eager, "optimized": _optimized,
                                               "onnxruntime": _onnxruntime, "openvino": _openvino, "int8": _int8}
DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


def available_backends() -> list[str]:
    return ["auto", *BUILDERS]


def default_dtype(name: str, device: torch.device) -> torch.dtype:
    """The precision a backend runs in when none is asked for: float16 for ``optimized`` (and ``auto``, which
    picks it) on a GPU, where tensor cores make it the fast path (within the stated float16 tolerance of the
    float64 goldens); float32 everywhere else."""
    return torch.float16 if device.type == "cuda" and name in ("auto", "optimized") else torch.float32


def resolve_dtype(dtype) -> torch.dtype:
    if dtype is None:
        return torch.float32
    if isinstance(dtype, str):
        if dtype not in DTYPES:
            raise BackendError(f"unknown dtype {dtype!a}; choose one of {sorted(DTYPES)}")
        return DTYPES[dtype]
    if dtype not in DTYPES.values():
        raise BackendError(f"dtype must be one of {sorted(DTYPES)}, got {dtype}")
    return dtype


def resolve_device(device, model=None) -> torch.device:
    if device is None:
        device = next(model.parameters()).device if model is not None else torch.device("cpu")
    device = torch.device(device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise BackendError(f"device {device} requested but this machine has no CUDA GPU")
    if device.type not in ("cpu", "cuda"):
        raise BackendError(f"device must be cpu or cuda, got {device}")
    return device


def _auto(model, device: torch.device, dtype: torch.dtype) -> Backend:
    """The first backend of ``auto.auto_order`` that builds (one warning per one that does not)."""
    from .auto import ENGINES, auto_order, engine_ready

    order, dtype = auto_order(device, dtype)
    if "optimized" in order and not _extension_for(device):  # squeezetime.ops has said once why
        order.remove("optimized")
    order = [b for b in order if b not in ENGINES or engine_ready(b, model)]  # never converts (auto_order says why)
    for i, candidate in enumerate(order):
        try:
            return BUILDERS[candidate](model, device, dtype)
        except Exception as e:  # noqa: BLE001 - auto means: the fastest that works here
            if i == len(order) - 1:
                raise
            logger.warning("squeezetime: backend %s failed to build (%s: %s); auto uses %s instead",
                           candidate, type(e).__name__, e, order[i + 1])
    raise AssertionError("unreachable: eager is last")


def create_backend(name: str, model, *, device=None, dtype=None) -> Backend:
    """Build backend ``name`` (one of ``available_backends()``: "auto", "eager", "optimized", "onnxruntime",
    "openvino", "int8") for ``model`` on ``device`` in ``dtype`` (None: ``default_dtype``)."""
    device = resolve_device(device, model)
    dtype = default_dtype(name, device) if dtype is None else resolve_dtype(dtype)
    if name == "auto":
        return _auto(model, device, dtype)
    if name not in BUILDERS:
        raise BackendError(f"unknown backend {name!a}; choose one of {available_backends()}")
    try:
        return BUILDERS[name](model, device, dtype)
    except SqueezeTimeError:
        raise
    except Exception as e:  # noqa: BLE001 - name the backend in the error
        raise BackendError(f"backend {name} failed to build: {type(e).__name__}: {e}") from e


__all__ = ["BUILDERS", "Backend", "BackendError", "DTYPES", "TorchBackend", "available_backends", "create_backend",
           "default_dtype", "resolve_device", "resolve_dtype"]
