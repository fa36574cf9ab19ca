"""What ``backend="auto"`` builds: an order of backends, fixed by measurement (``squeezetime bench --peers``,
docs/engines.md), not by a benchmark at start-up. The first one that builds serves; each failure is one
warning line naming the next."""
from __future__ import annotations

import functools
import importlib.util
import logging
from pathlib import Path

import torch

logger = logging.getLogger("squeezetime")


@functools.lru_cache(maxsize=1)
def cpu_flags() -> frozenset:
    try:
        return frozenset(Path("/proc/cpuinfo").read_text().split("\nflags", 2)[1].split("\n", 1)[0].split(":", 1)[1].split())
    except (OSError, IndexError):
        return frozenset()


def cpu_has_native_bf16() -> bool:
    """bf16 dot products in hardware (AVX512_BF16 or AMX-BF16). oneDNN also runs bf16 on plain AVX-512 by
    emulation, and not at all on AVX2-only CPUs (``squeezetime.optimize`` then leaves oneDNN for ATen's
    reference convolutions); only native bf16 is faster than float32."""
    flags = cpu_flags()
    if not flags:  # not Linux: ask oneDNN
        return bool(getattr(torch.ops.mkldnn, "_is_mkldnn_bf16_supported", lambda: False)())
    return "avx512_bf16" in flags or "amx_bf16" in flags


ENGINES = {"onnxruntime": "onnxruntime", "openvino": "openvino"}  # backend -> the package it needs


def auto_order(device: torch.device, dtype: torch.dtype) -> tuple[list[str], torch.dtype]:
    """(backends in order of measured speed, dtype to serve) for ``backend="auto"``.

    Measured with ``squeezetime bench --peers`` (docs/engines.md), full k400 network, uint8 clips in, median
    ratio to eager; this project's 2-core AMD EPYC, AVX2 only, shared and loaded (noisy, 2-4 rounds):
    onnxruntime 4.73x / 3.36x and openvino 4.41x / 3.27x at batch 8 (two runs), optimized fp32 2.69x / 2.64x;
    at batch 1 onnxruntime 555 ms, openvino 596 ms, optimized 2147 ms. So on CPUs without AVX-512: onnxruntime,
    openvino, optimized, eager. With AVX-512 (the machine of issue 11: optimized fp32 1.52x / 1.54x, onnxruntime
    1.36x / 1.43x, openvino 1.13x / 1.55x at batch 1 / 8): optimized, onnxruntime, openvino, eager.
    CPU bfloat16 with native bf16 (AVX512_BF16 / AMX), from that machine (OpenVINO bf16 3.13x / 3.34x,
    optimized bf16 2.72x / 2.88x): openvino, optimized, eager. Without native bf16, bf16 is emulated or runs
    ATen's reference kernels and is slower than float32 (optimized bf16 0.92x / 0.35x of eager here; OpenVINO
    silently runs float32): auto warns and serves float32 by the float32 order.
    CUDA: optimized (fused CUDA kernels, fp16 on tensor cores), then eager; the engines run on the CPU only here.

    ``create_backend`` then skips an engine (onnxruntime, openvino) that is not installed, or whose converted
    model for these weights is not in the disk cache yet (``engine_ready``): converting is a one-time ONNX
    export of minutes for the full network on this machine, which a default must not spend on every new set
    of weights (tests, servers starting, a notebook). ``squeezetime.load(model, backend="onnxruntime")``
    once (or ``squeezetime bench --peers``) fills the cache; from then on auto serves the engine.
    """
    if device.type == "cuda":
        return ["optimized", "eager"], dtype
    if dtype == torch.bfloat16:
        if cpu_has_native_bf16():
            return ["openvino", "optimized", "eager"], dtype
        logger.warning("squeezetime: this CPU has no native bfloat16 (no avx512_bf16/amx_bf16): backend 'auto' "
                       "serves float32, which is faster here (name a backend to force bfloat16)")
        dtype = torch.float32
    if "avx512f" in cpu_flags():
        return ["optimized", "onnxruntime", "openvino", "eager"], dtype
    return ["onnxruntime", "openvino", "optimized", "eager"], dtype


def engine_ready(name: str, model) -> bool:
    """An engine backend is installed and its converted model for these weights is in the disk cache."""
    if importlib.util.find_spec(ENGINES[name]) is None:
        return False
    from .onnxruntime import default_image_size, onnx_cached
    from .openvino import ir_cached

    try:
        size = default_image_size(model)
    except Exception:  # noqa: BLE001 - not a model the engines convert (no DataConfig): not ready
        return False
    return onnx_cached(model, size) if name == "onnxruntime" else ir_cached(model, size)
