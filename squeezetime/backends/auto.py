"""What ``backend="auto"`` builds: an order of backends, fixed by measurement (``squeezetime bench --peers``,
docs/engines.md), not by a benchmark at start-up. The first one that builds serves; each failure is one
warning line naming the next."""
from __future__ import annotations

import functools
import logging
from pathlib import Path

import torch

logger = logging.getLogger("squeezetime")


@functools.lru_cache(maxsize=1)
def cpu_has_native_bf16() -> bool:
    """bf16 dot products in hardware (AVX512_BF16 or AMX-BF16). oneDNN also runs bf16 on plain AVX-512 by
    emulation, and not at all on AVX2-only CPUs (``squeezetime.optimize`` then leaves oneDNN for ATen's
    reference convolutions); only native bf16 is faster than float32."""
    try:
        flags = Path("/proc/cpuinfo").read_text().split("\nflags", 2)[1].split("\n", 1)[0].split()
        return "avx512_bf16" in flags or "amx_bf16" in flags
    except (OSError, IndexError):  # not Linux: ask oneDNN
        return bool(getattr(torch.ops.mkldnn, "_is_mkldnn_bf16_supported", lambda: False)())


def auto_order(device: torch.device, dtype: torch.dtype) -> tuple[list[str], torch.dtype]:
    """(backends to try in order, dtype to serve) for ``backend="auto"``.

    CPU float32: ``optimized``, then ``openvino``, ``onnxruntime``, ``eager``. Measured on this project's
    2-core AMD EPYC (AVX2, no AVX-512; machine shared and loaded), full k400 network, median latency ratio to
    eager (docs/engines.md): optimized 1.24x / 1.19x (batch 1 / 8), openvino 1.04x / 1.08x, onnxruntime
    1.00x / 1.03x; optimized is also the only one that builds in under a second (the other two export the
    network to ONNX once, about two minutes for the full network here, then read it from the disk cache).
    CPU bfloat16 with native bf16 (AVX512_BF16 / AMX): ``openvino``, then ``optimized``, ``eager`` — from the
    AVX-512 bf16 machine of issue 11 (OpenVINO bf16 3.13x / 3.34x against optimize bf16 2.72x / 2.88x), which
    this machine cannot check. CPU bfloat16 without it: bf16 is emulated or unavailable and slower than
    float32 (optimized bf16 0.27x / 0.26x of eager here), so auto warns and serves float32 by the float32 order.
    CUDA: ``optimized`` (fused CUDA kernels, fp16 on tensor cores), then ``eager``; neither engine runs on CUDA
    here.
    """
    if device.type == "cuda":
        return ["optimized", "eager"], dtype
    if dtype == torch.bfloat16:
        if cpu_has_native_bf16():
            return ["openvino", "optimized", "eager"], dtype
        logger.warning("squeezetime: this CPU has no native bfloat16 (no avx512_bf16/amx_bf16): backend 'auto' "
                       "serves float32, which is faster here (name a backend to force bfloat16)")
        dtype = torch.float32
    return ["optimized", "openvino", "onnxruntime", "eager"], dtype
