"""Operator micro-benchmarks of ``squeezetime bench``: our C++/CUDA operators against what they replace.

- ``squeeze_time`` (uint8 clips -> normalised float input) against a plain copy of the same bytes, and on CPU
  against the eager normalisation;
- ``network_input``: one clip into the optimised network's channels-last input buffer, in two passes or one;
- ``ctl_combine`` (the CTL module's tail in one kernel) against its eager composition.
"""
from __future__ import annotations

import statistics

from .timing import time_call

CTL_SHAPES = [(1, 64, 56, 56), (8, 64, 56, 56), (1, 512, 7, 7)]


def micro_benchmarks(device: str, rounds: int) -> dict:
    """squeeze_time vs a copy of the same bytes; ctl_combine vs its eager composition."""
    import torch

    from .. import ops

    res = {"extension": ops.extension_available()}
    frames = torch.randint(0, 256, (8, 16, 224, 224, 3), dtype=torch.uint8, device=device)
    reps = max(rounds * 4, 10)
    res["squeeze_time"] = squeeze_time_benchmark(frames, device, reps)
    if device == "cpu" and ops.has_kernel("squeeze_time.out") and ops.has_kernel("to_channels_last"):
        res["network_input"] = network_input_benchmark(frames[:1], reps)
    dtypes = [torch.float32, torch.bfloat16] if device == "cpu" else [torch.float32, torch.float16]
    res["ctl_combine"] = [ctl_combine_benchmark(dtype, shape, device, reps) for dtype in dtypes for shape in CTL_SHAPES]
    return res


def squeeze_time_benchmark(frames, device: str, reps: int) -> dict:
    """``squeeze_time`` on uint8 ``frames`` against the copies of the same bytes (and, on CPU, eager)."""
    import torch

    from .. import ops
    from ..preprocess import normalize_clip

    nbytes = frames.numel() * (1 + 4)  # read uint8, write float32
    # the plain copy of the same bytes: uint8 -> new float32 tensor (same reads, writes and allocation);
    # also a copy into a preallocated buffer (no page faults), the bandwidth ceiling of this machine
    src = torch.empty(nbytes // 2, dtype=torch.uint8, device=device)
    dst = torch.empty_like(src)
    t_squeeze, t_copy, t_copy_pre = [], [], []
    for _ in range(reps):
        t_squeeze.append(time_call(ops.squeeze_time, frames, device=device))
        t_copy.append(time_call(frames.float, device=device))
        t_copy_pre.append(time_call(dst.copy_, src, device=device))
    ts, tc, tp = statistics.median(t_squeeze), statistics.median(t_copy), statistics.median(t_copy_pre)
    result = {"shape": list(frames.shape), "ms": ts * 1e3, "copy_same_bytes_ms": tc * 1e3,
              "copy_preallocated_ms": tp * 1e3, "GB_per_s": nbytes / ts / 1e9,
              "fraction_of_copy_bandwidth": tc / ts, "fraction_of_preallocated_copy": tp / ts,
              "eager_normalize_fold_ms": None}
    if device == "cpu":
        n, t, h, w, _ = frames.shape
        te = [time_call(lambda: normalize_clip(frames).reshape(n, 3 * t, h, w)) for _ in range(max(reps // 4, 3))]
        result["eager_normalize_fold_ms"] = statistics.median(te) * 1e3
    return result


def ctl_combine_benchmark(dtype, shape: tuple, device: str, reps: int) -> dict:
    """``ctl_combine`` against relu((t + s * sigmoid(g)) * scale + shift + r) in eager ops, interleaved."""
    import torch

    from .. import ops

    t, s, g, r = [torch.randn(shape, device=device).to(dtype).contiguous(memory_format=torch.channels_last)
                  for _ in range(4)]
    scale, shift = torch.randn(shape[1], device=device), torch.randn(shape[1], device=device)
    sc, sh = scale.to(dtype).view(1, -1, 1, 1), shift.to(dtype).view(1, -1, 1, 1)

    def eager():
        return torch.relu((t + s * torch.sigmoid(g)) * sc + sh + r)

    def fused():
        return ops.ctl_combine(t, s, g, scale, shift, r, True)
    for f in (eager, fused):
        f()
    te, tf = [], []
    for _ in range(reps):
        te.append(time_call(eager, device=device))
        tf.append(time_call(fused, device=device))
    return {"dtype": str(dtype).replace("torch.", ""), "shape": list(shape),
            "eager_ms": statistics.median(te) * 1e3, "fused_ms": statistics.median(tf) * 1e3,
            "speedup": statistics.median(te) / statistics.median(tf)}


def network_input_benchmark(clip, reps: int) -> dict:
    """One uint8 clip into the optimised network's channels-last float input buffer: squeeze_time then
    to_channels_last (two passes, what ``forward`` on normalised clips does) against squeeze_time.out (one pass,
    what ``forward_frames`` does), interleaved."""
    import torch

    from .. import ops
    from ..models import MEAN, STD

    mean, std = list(MEAN), list(STD)
    n, t, h, w, c = clip.shape
    buf = torch.empty(n, c * t, h, w, memory_format=torch.channels_last)
    paths = {"two_passes": lambda: torch.ops.squeezetime.to_channels_last(ops.squeeze_time(clip, mean, std), out=buf),
             "one_pass": lambda: torch.ops.squeezetime.squeeze_time.out(clip, mean, std, out=buf)}
    times: dict[str, list[float]] = {k: [] for k in paths}
    for _ in range(reps):
        for k, f in paths.items():
            times[k].append(time_call(f))
    ms = {k: statistics.median(v) * 1e3 for k, v in times.items()}
    return {"shape": list(clip.shape), "two_passes_ms": ms["two_passes"], "one_pass_ms": ms["one_pass"],
            "speedup": ms["two_passes"] / ms["one_pass"]}


__all__ = ["ctl_combine_benchmark", "micro_benchmarks", "network_input_benchmark", "squeeze_time_benchmark"]
