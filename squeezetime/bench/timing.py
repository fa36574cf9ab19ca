"""Timing helpers shared by the benchmarks: one call timed with the device drained, medians per path."""
from __future__ import annotations

import statistics
import time


def sync(device: str) -> None:
    import torch

    if device == "cuda":
        torch.cuda.synchronize()


def time_call(fn, *args, device="cpu") -> float:
    """Seconds of one call of ``fn(*args)``, the device's queue drained before and after."""
    sync(device)
    t0 = time.perf_counter()
    fn(*args)
    sync(device)
    return time.perf_counter() - t0


def latency_summary(times: dict[str, list[float]], batch: int) -> dict:
    """Seconds per call of each path -> medians, per-clip figures and the ratio to eager (when measured)."""
    eager = statistics.median(times["eager"]) if times.get("eager") else None
    out = {}
    for name, ts in times.items():
        median = statistics.median(ts)
        out[name] = {"median_ms": median * 1e3, "per_clip_ms": median * 1e3 / batch, "clips_per_s": batch / median,
                     "min_ms": min(ts) * 1e3, "speedup_vs_eager": (eager / median) if eager else None}
    return out


__all__ = ["latency_summary", "sync", "time_call"]
