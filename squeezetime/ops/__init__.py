"""Fused operators of the ``squeezetime`` torch library (C++/CUDA extension) with pure-PyTorch fallbacks.

    squeeze_time(frames, mean, std)  uint8 (N, T, H, W, 3) -> normalised float32 (N, 3*T, H, W), channel c*T + t
    squeeze_time.out(frames, mean, std, *, out)  the same into out: float32 NCHW, or channels-last float32 or
        bfloat16 in one pass (CPU; the optimised network's input buffer)
    ctl_combine(temporal, short, glo, scale, shift, residual=None, relu=False)
        scale[c] * (temporal + short * sigmoid(glo)) + shift[c] (+ residual) (ReLU): the end of a CTL module
        and the batch norm after it, in one pass.
    gate_scale(x, w1, b1, w2)  x * sigmoid(w2 @ relu(w1 @ mean_hw(x) + b1)) per (n, c): a CTL module's temporal
        gate applied to its input (CPU: float32, bfloat16; CUDA: float32, float16, bfloat16)
    to_channels_last(x, dtype) / to_channels_last.out(x, *, out)  float32 NCHW -> channels-last float32 or
        bfloat16 (CUDA: also float16) in one tiled pass (the network's input, its largest tensor)

Every operator has a CPU and a CUDA kernel (csrc/cpu, csrc/cuda); squeeze_time.out on CUDA also writes
channels-last float16, the GPU network's input.

Importing this module (``import squeezetime`` does) loads the extension when it is built, which registers
``torch.ops.squeezetime.*`` with CPU kernels (float32, bfloat16) and, when built against a CUDA torch, CUDA
kernels (float32, float16, bfloat16), and registers the fake kernels (``fake``) so that torch.compile and
torch.export see through the operators. Without a built extension the functions below run the reference
implementations (``reference``) and say so once, at the first use (SQUEEZETIME_DISABLE_EXT=1 forces that).
"""
from __future__ import annotations

import importlib
import os
import sys
import warnings
from typing import Sequence

import torch
from torch import Tensor

from ..models.registry import MEAN, STD
from .reference import ctl_combine_reference, gate_scale_reference, squeeze_time_reference

__all__ = ["built_against", "ctl_combine", "ctl_combine_reference", "cuda_extension_available", "cuda_extension_error",
           "extension_available", "extension_error", "first_caller_outside_package", "gate_scale",
           "gate_scale_reference", "has_cuda_kernel", "has_kernel", "squeeze_time", "squeeze_time_reference"]

REINSTALL_HINT = ("reinstall squeezetime with the extension: `pip install --no-build-isolation .` in an "
                  "environment that has torch, or `python setup.py build_ext --inplace` in a source checkout")

_state: dict = {}


class ExtensionNotBuiltWarning(UserWarning):
    pass


def _load() -> dict:
    """Load squeezetime._C (and _C_cuda) once: the operators' schema and kernels, then their fake kernels."""
    if _state:
        return _state
    _state.update(cpu=False, cuda=False, error=None, warned=False)
    if os.environ.get("SQUEEZETIME_DISABLE_EXT") == "1":
        _state["error"] = "disabled by SQUEEZETIME_DISABLE_EXT=1"
        _state["disabled"] = True
    else:
        _use_extension_dir()
        try:
            importlib.import_module("squeezetime._C")
            _state["cpu"] = hasattr(torch.ops.squeezetime, "ctl_combine")
            if not _state["cpu"]:
                _state["error"] = "squeezetime._C loaded but registers no torch.ops.squeezetime operators"
        except (ImportError, OSError) as e:
            _state["error"] = f"{type(e).__name__}: {e}"
    if _state["cpu"]:
        from . import fake

        fake.register()
        _warn_if_built_for_another_torch()
        if torch.version.cuda:
            try:
                importlib.import_module("squeezetime._C_cuda")
                _state["cuda"] = True
            except (ImportError, OSError) as e:
                _state["cuda_error"] = f"{type(e).__name__}: {e}"
    return _state


def _use_extension_dir() -> None:
    """SQUEEZETIME_EXT_DIR: a `setup.py build_ext --build-lib DIR` output, whose squeezetime/_C*.so and
    _build_info.py are imported instead of the source tree's. One checkout can then be tested under several
    torch versions, each venv with the extension built against its own torch, out of tree."""
    ext_dir = os.environ.get("SQUEEZETIME_EXT_DIR")
    if not ext_dir:
        return
    package = sys.modules[__name__.rpartition(".")[0]]  # squeezetime
    path = os.path.join(os.path.abspath(ext_dir), "squeezetime")
    if path not in package.__path__:
        package.__path__.insert(0, path)


def _warn_if_built_for_another_torch() -> None:
    """setup.py records the torch it compiled against (squeezetime/_build_info.py): a different torch may load
    the extension and still misbehave (C++ ABI), so say it once."""
    built = built_against().get("TORCH_VERSION")
    if built and built != torch.__version__:
        warnings.warn(f"squeezetime: the C++ extension was built against torch {built}, this is torch "
                      f"{torch.__version__}; if an operator fails, {REINSTALL_HINT}", ExtensionNotBuiltWarning,
                      stacklevel=2)


def _warn_if_missing() -> None:
    """The one-time message of a missing extension, at the first use of an operator (not at import)."""
    state = _load()
    if state["cpu"] or state["warned"]:
        return
    state["warned"] = True
    if state.get("disabled"):
        message = "squeezetime: C++ extension disabled by SQUEEZETIME_DISABLE_EXT=1, using pure-PyTorch path"
    else:
        message = (f"squeezetime: C++ extension not built, using pure-PyTorch path ({REINSTALL_HINT}; "
                   f"import error: {state['error']})")
    warnings.warn(message, ExtensionNotBuiltWarning, stacklevel=first_caller_outside_package())


def first_caller_outside_package() -> int:
    """The warnings stacklevel of the first frame outside the squeezetime package (the user's call)."""
    package = os.path.dirname(os.path.dirname(os.path.abspath(__file__))) + os.sep
    frame, level = sys._getframe(1), 1  # level 1: the function that calls warnings.warn
    while frame.f_back is not None and os.path.abspath(frame.f_code.co_filename).startswith(package):
        frame, level = frame.f_back, level + 1
    return level


def extension_available() -> bool:
    """True when ``torch.ops.squeezetime`` has its CPU kernels (and the schema); says once if it does not."""
    _warn_if_missing()
    return _load()["cpu"]


def cuda_extension_available() -> bool:
    """True when the CUDA kernels (squeezetime._C_cuda) are loaded."""
    return _load()["cuda"]


def extension_error() -> str | None:
    """Why the extension is not loaded (the import error), or None."""
    return _load()["error"]


def cuda_extension_error() -> str | None:
    """Why the CUDA kernels (squeezetime._C_cuda) did not load when the CPU extension did, or None."""
    return _load().get("cuda_error")


def built_against() -> dict:
    """The build record setup.py's build_ext writes (squeezetime/_build_info.py: TORCH_VERSION, COMPILER, ...),
    empty when there is none (built before the record existed, or by CMake). Read by name like the extension
    itself: a generated file, absent from a plain source checkout."""
    try:
        record = importlib.import_module("squeezetime._build_info")
    except ImportError:
        return {}
    return {k: v for k, v in vars(record).items() if k.isupper()}


def has_kernel(name: str) -> bool:
    """True when the built extension has the CPU operator ``name`` ("op" or "op.overload"; one built before it
    existed lacks it)."""
    state = _load()
    key = "has_" + name
    if key not in state:
        op, _, overload = name.partition(".")
        state[key] = bool(state["cpu"]) and hasattr(torch.ops.squeezetime, op) and (
            not overload or overload in torch.ops.squeezetime.__getattr__(op).overloads())
    return state[key]


def has_cuda_kernel(name: str) -> bool:
    """True when the CUDA extension is loaded and registers a CUDA kernel for ``name`` ("op" or "op.overload")."""
    state = _load()
    key = "has_cuda_" + name
    if key not in state:
        state[key] = bool(state["cuda"]) and torch._C._dispatch_has_kernel_for_dispatch_key(
            "squeezetime::" + name, "CUDA")
    return state[key]


def _use_kernel(device: torch.device) -> bool:
    _warn_if_missing()
    state = _load()
    return state["cpu"] if device.type == "cpu" else (device.type == "cuda" and state["cuda"])


def squeeze_time(frames: Tensor, mean: Sequence[float] = MEAN, std: Sequence[float] = STD) -> Tensor:
    """uint8 RGB frames (N, T, H, W, 3) -> float32 (N, 3*T, H, W), channel c*T + t, ``(x - mean[c]) / std[c]``:
    the production normalise-and-fold (``preprocess.normalize_clip`` is a view of it). The kernel when built
    for the frames' device, else ``squeeze_time_reference`` (bit-identical on CPU)."""
    if _use_kernel(frames.device):
        return torch.ops.squeezetime.squeeze_time(frames, [float(m) for m in mean], [float(s) for s in std])
    return squeeze_time_reference(frames, mean, std)


def ctl_combine(temporal: Tensor, short: Tensor, glo: Tensor, scale: Tensor, shift: Tensor,
                residual: Tensor | None = None, relu: bool = False) -> Tensor:
    """``scale[c] * (temporal + short * sigmoid(glo)) + shift[c]`` (+ residual) (ReLU) in one pass."""
    if _use_kernel(temporal.device):
        return torch.ops.squeezetime.ctl_combine(temporal, short, glo, scale, shift, residual, relu)
    return ctl_combine_reference(temporal, short, glo, scale, shift, residual, relu)


def gate_scale(x: Tensor, w1: Tensor, b1: Tensor, w2: Tensor) -> Tensor:
    """``x * sigmoid(w2 @ relu(w1 @ mean_hw(x) + b1))[n, c]`` in one call (CPU and CUDA kernels; the reference
    elsewhere). w1, b1, w2: float32 (the gate is computed in float32)."""
    _warn_if_missing()
    if (x.device.type == "cpu" and has_kernel("gate_scale")) or (x.device.type == "cuda" and has_cuda_kernel("gate_scale")):
        return torch.ops.squeezetime.gate_scale(x, w1, b1, w2)
    return gate_scale_reference(x, w1, b1, w2)


_load()  # importing the package makes torch.ops.squeezetime.* usable (the warning, if any, waits for a use)
