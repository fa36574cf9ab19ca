"""Latency of the full network per inference path, interleaved in one process (``squeezetime bench``).

Paths: eager (the official maths, unoptimised), compile (torch.compile of the eager model, inductor, freezing
on), opt-fp32 / opt-fp32-unfused (squeezetime.optimize with / without the fused operators), opt-bf16 (CPU),
opt-fp16 (CUDA; the served GPU path, CUDA graphs per batch bucket, is timed by ``python -m squeezetime.bench.gpu``,
the table of `make gpu-check`). Rounds are interleaved (one call of every path per round), warm-up
excluded; reports the median per-clip latency, clips/s and the ratio to eager, plus the operator
micro-benchmarks of ``bench.operators``. ``write_report`` writes DIR/bench.json and DIR/bench.png.

The settings (``NetworkBench``), the speed-up plot and ``write_report`` serve ``bench.peers`` too.
"""
from __future__ import annotations

import json
import os
import platform
import sys
import time
from dataclasses import dataclass

from ..optimize.compile_settings import inductor_settings
from .operators import micro_benchmarks
from .plot import figure
from .timing import latency_summary, sync, time_call

CPU_PATHS = ["eager", "compile", "opt-fp32", "opt-fp32-unfused", "opt-bf16"]
CUDA_PATHS = ["eager", "compile", "opt-fp32", "opt-fp32-unfused", "opt-fp16"]
ALL_PATHS = sorted(set(CPU_PATHS + CUDA_PATHS + ["opt-fp32-compile"]))


@dataclass(frozen=True)
class NetworkBench:
    """What every network benchmark measures: the ``arch`` network (random weights) on 16 x size x size clips."""
    arch: str = "k400"
    widen_factor: float = 1.0
    size: int = 224
    batch_sizes: tuple[int, ...] = (1,)
    rounds: int = 5  # timed calls per path and batch size
    warmup: int = 2  # untimed calls per path first (torch.compile compiles in the first)
    threads: int | None = None  # torch.set_num_threads (None: torch's)

    def config(self) -> dict:
        return {"arch": self.arch, "widen_factor": self.widen_factor, "size": self.size, "frames": 16,
                "rounds": self.rounds, "warmup": self.warmup}


def build_path(name: str, model, device: str):
    """A callable normalised clip -> logits for the path (compilation happens in warm-up). The backends are
    built as ``squeezetime.load`` builds them (on CUDA their optimised module, without the CUDA graphs); the
    others are ablations (compile, unfused)."""
    import torch

    from ..backends import create_backend
    from ..optimize import optimize

    backends = {"eager": ("eager", None), "opt-fp32": ("optimized", "float32"), "opt-bf16": ("optimized", "bfloat16"),
                "opt-fp16": ("optimized", "float16")}
    if name in backends:  # the Classifier's backends, as every serving path builds them
        backend, dtype = backends[name]
        return create_backend(backend, model, device=device, dtype=dtype).module  # takes normalised float clips
    if name == "compile":  # compiled at the first call: run_paths warms it up inside inductor_settings()
        return torch.compile(model, dynamic=False)
    if name == "opt-fp32-unfused":
        return optimize(model, fused=False)
    if name == "opt-fp32-compile":
        return optimize(model, compile=True)
    raise ValueError(name)


def time_paths(paths: list[str], model, x, bench: NetworkBench, device: str, bar) -> tuple[dict, dict]:
    """Build and warm up every path on ``x`` (the compiles happen here, with our inductor settings), then
    ``bench.rounds`` interleaved rounds: (latency summary, setup seconds per path)."""
    fns, setup = {}, {}
    b = x.shape[0]
    for name in paths:
        bar.set_postfix_str(f"batch {b}: {name} (warm-up)")
        t0 = time.perf_counter()
        with inductor_settings():
            fns[name] = build_path(name, model, device)
            for _ in range(bench.warmup):
                fns[name](x)
                bar.update(1)
        sync(device)
        setup[f"{name}@{b}"] = time.perf_counter() - t0
    times = {name: [] for name in paths}
    for _ in range(bench.rounds):
        for name in paths:
            bar.set_postfix_str(f"batch {b}: {name}")
            times[name].append(time_call(fns[name], x, device=device))
            bar.update(1)
    return latency_summary(times, b), setup


def run_paths(bench: NetworkBench, paths: list[str], device: str = "cpu", micro: bool = True) -> dict:
    """Every path at every batch size, rounds interleaved; the results ``write_report`` writes."""
    import torch
    from tqdm import tqdm

    from .. import ops
    from ..models import create_model

    if bench.threads:
        torch.set_num_threads(bench.threads)
    torch.manual_seed(0)
    model = create_model(bench.arch, widen_factor=bench.widen_factor).to(device)
    device_name = torch.cuda.get_device_name() if device == "cuda" else (platform.processor() or platform.machine())
    results = {"config": {**bench.config(), "paths": paths},
               "machine": {"device": device if device == "cpu" else device_name, "cpu": device_name,
                           "threads": torch.get_num_threads(), "cpu_count": os.cpu_count(),
                           "torch": torch.__version__, "extension": ops.extension_available()},
               "latency": {}, "setup_s": {}}
    total = len(bench.batch_sizes) * len(paths) * (bench.rounds + bench.warmup)
    with torch.inference_mode(), tqdm(total=total, desc="bench", unit="call", file=sys.stderr) as bar:
        for b in bench.batch_sizes:
            x = torch.randn(b, 3, 16, bench.size, bench.size, device=device)
            results["latency"][str(b)], setup = time_paths(paths, model, x, bench, device, bar)
            results["setup_s"].update(setup)
    if micro:
        results["micro"] = micro_benchmarks(device, bench.rounds)
    return results


def plot_speedups(results: dict, path: str) -> None:
    """Bars: each path's speed-up over eager (median latency), one group per path, one bar per batch size."""
    batches = list(results["latency"])
    paths = list(next(iter(results["latency"].values())))
    with figure(path, figsize=(2.2 + 1.3 * len(paths) * len(batches), 4)) as (_, ax):
        width = 0.8 / len(batches)
        for i, b in enumerate(batches):
            speed = [results["latency"][b][p]["speedup_vs_eager"] for p in paths]
            bars = ax.bar([x + i * width for x in range(len(paths))], speed, width, label=f"batch {b}")
            ax.bar_label(bars, fmt="%.2fx", fontsize=8)
        ax.set_xticks([x + width * (len(batches) - 1) / 2 for x in range(len(paths))], paths, rotation=20)
        ax.axhline(1.0, color="grey", lw=0.8)
        ax.set_ylabel("speed-up vs eager (median latency)")
        ax.set_title(f"SqueezeTime {results['config']['arch']} 16x{results['config']['size']}^2, "
                     f"{results['machine']['device']}")
        ax.legend()


def write_report(results: dict, out: str, name: str, plotted: dict | None) -> tuple[str, str]:
    """DIR/NAME.json (``results``) and DIR/NAME.png (the speed-ups of ``plotted``; no PNG when None)."""
    os.makedirs(out, exist_ok=True)
    json_path, png_path = os.path.join(out, f"{name}.json"), os.path.join(out, f"{name}.png")
    with open(json_path, "w") as f:
        json.dump(results, f, indent=2)
    if plotted is not None:
        plot_speedups(plotted, png_path)
    return json_path, png_path


__all__ = ["ALL_PATHS", "CPU_PATHS", "CUDA_PATHS", "NetworkBench", "build_path", "plot_speedups", "run_paths",
           "time_paths", "write_report"]
