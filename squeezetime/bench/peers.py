"""``squeezetime bench --peers``: the engines a user could pick instead, against every backend of ours.

Rows: eager, torch.compile fp32/bf16, ONNX Runtime, OpenVINO fp32/bf16, and every backend of ours through
``squeezetime.load``, all from uint8 clips (normalisation inside every timing), batch 1 and 8, rounds
interleaved; DIR/peers.json and DIR/peers.png (ratios to eager). The rows are one list, ``PEERS``: each a
factory (model, threads) -> callable(uint8 clips (N, T, H, W, 3)) -> logits. Other modules append rows.
"""
from __future__ import annotations

import os
import platform
import sys
import time

from ..optimize.compile_settings import inductor_settings
from .network import NetworkBench
from .timing import latency_summary, time_call


def _ours(backend: str, dtype: str | None = None):
    def factory(model, threads):
        import squeezetime

        return squeezetime.load(model, backend=backend, dtype=dtype, threads=threads).backend.logits
    return factory


def _ours_int8(model, threads):
    from ..quantize import int8_peer  # squeezetime quantize's engine (OpenVINO + NNCF), 16 generated clips, no gate

    return int8_peer(model, threads)


def _torch_eager(model, threads):
    from ..preprocess import normalize_clip

    return lambda clips: model(normalize_clip(clips))


def _torch_compile(dtype_name: str):
    def factory(model, threads):  # compiled at the first call: run_peers warms it up inside inductor_settings()
        import copy

        import torch

        from ..preprocess import normalize_clip

        dtype = getattr(torch, dtype_name)
        net = model if dtype == torch.float32 else copy.deepcopy(model).to(dtype)
        return torch.compile(lambda clips: net(normalize_clip(clips).to(dtype)).float(), dynamic=False)
    return factory


def _onnx_path(model):
    from ..backends.onnxruntime import default_image_size, onnx_file

    return onnx_file(model, default_image_size(model))[0]  # the project's ONNX export, cached on disk


def _onnxruntime_peer(model, threads):
    from ..export.onnx import onnx_session, run_onnxruntime

    session = onnx_session(_onnx_path(model), threads=threads)
    return lambda clips: run_onnxruntime(session, clips)[0]


def _openvino_peer(hint: str):
    def factory(model, threads):
        import numpy as np
        import openvino as ov
        import torch

        compiled = ov.Core().compile_model(ov.convert_model(_onnx_path(model)), "CPU", {
            "INFERENCE_PRECISION_HINT": hint, "INFERENCE_NUM_THREADS": threads})
        request = compiled.create_infer_request()

        def call(clips):
            request.infer({0: np.ascontiguousarray(clips.numpy())})
            return torch.from_numpy(request.get_output_tensor(0).data.copy())
        return call
    return factory


PEERS: list[tuple[str, object]] = [
    ("eager", _torch_eager),  # the network as written, normalize_clip + forward: the 1.0x of every ratio
    ("torch.compile fp32", _torch_compile("float32")),
    ("torch.compile bf16", _torch_compile("bfloat16")),
    ("onnxruntime fp32", _onnxruntime_peer),
    ("openvino fp32", _openvino_peer("f32")),
    ("openvino bf16", _openvino_peer("bf16")),
    ("ours eager", _ours("eager")),
    ("ours optimized fp32", _ours("optimized")),
    ("ours optimized bf16", _ours("optimized", "bfloat16")),
    ("ours onnxruntime", _ours("onnxruntime")),
    ("ours openvino fp32", _ours("openvino")),
    ("ours openvino bf16", _ours("openvino", "bfloat16")),
    ("ours auto fp32", _ours("auto")),
    ("ours int8", _ours_int8),  # also what "openvino int8" would be: NNCF on the same OpenVINO model
]


def machine_info() -> dict:
    """CPU model and the flags that decide the fast paths (lscpu), threads, library versions."""
    import subprocess

    import torch

    from ..backends.engine_cache import package_version

    info = {"cpu_count": os.cpu_count(), "threads": torch.get_num_threads(), "torch": torch.__version__,
            "onnxruntime": package_version("onnxruntime"), "openvino": package_version("openvino")}
    try:
        lscpu = subprocess.run(["lscpu"], capture_output=True, text=True, timeout=10).stdout
        fields = dict(line.split(":", 1) for line in lscpu.splitlines() if ":" in line)
        info["cpu"] = fields.get("Model name", "").strip()
        flags = fields.get("Flags", "").split()
        info["simd_flags"] = [f for f in flags if f.startswith(("avx", "amx", "fma")) or "vnni" in f or "bf16" in f]
    except (OSError, subprocess.SubprocessError):
        info["cpu"] = platform.processor() or platform.machine()
    return info


def build_rows(rows, model, clips, bench: NetworkBench, results: dict, bar) -> dict:
    """Each row's callable, built and warmed up on ``clips`` (the compiles happen here, with our inductor
    settings); a row that fails is reported in ``results["failed"]`` and left out, not fatal."""
    import torch

    threads, b, fns = torch.get_num_threads(), clips.shape[0], {}
    for name, factory in rows:
        bar.set_postfix_str(f"batch {b}: {name} (build, warm-up)")
        t0 = time.perf_counter()
        try:
            with torch.inference_mode(False), inductor_settings():  # exporters and compilers trace outside it
                fns[name] = factory(model, threads)
            with inductor_settings():
                for _ in range(bench.warmup):
                    fns[name](clips)
                    bar.update(1)
        except Exception as e:  # noqa: BLE001 - a row that cannot run here is reported, not fatal
            results["failed"][f"{name}@{b}"] = f"{type(e).__name__}: {e}"
            print(f"bench --peers: {name} at batch {b} failed: {type(e).__name__}: {e}", file=sys.stderr)
            fns.pop(name, None)
        results["setup_s"][f"{name}@{b}"] = time.perf_counter() - t0
    return fns


def time_rows(fns: dict, clips, bench: NetworkBench, settle: float, bar) -> dict:
    """``bench.rounds`` interleaved rounds of every row on ``clips``: the latency summary."""
    b, times = clips.shape[0], {name: [] for name in fns}
    for _ in range(bench.rounds):
        for name, fn in fns.items():
            bar.set_postfix_str(f"batch {b}: {name}")
            time.sleep(settle)  # the previous row's thread pool may still be spinning
            times[name].append(time_call(fn, clips))
            bar.update(1)
    return latency_summary(times, b)


def run_peers(bench: NetworkBench, rows: list[str] | None = None, settle: float = 0.2, command: str = "") -> dict:
    """Every row of PEERS (or of ``rows``, eager always) on the same uint8 clips, batch by batch, rounds
    interleaved; the results ``network.write_report`` writes (``plotted_peers`` picks what the PNG shows)."""
    import gc

    import torch
    from tqdm import tqdm

    from ..models import create_model

    if bench.threads:
        torch.set_num_threads(bench.threads)
    chosen = [(n, f) for n, f in PEERS if rows is None or n in rows or n == "eager"]
    torch.manual_seed(0)
    model = create_model(bench.arch, widen_factor=bench.widen_factor).eval()
    config = {"arch": bench.arch, "widen_factor": bench.widen_factor, "size": bench.size, "frames": 16,
              "input": "uint8 clips (N, 16, H, W, 3), normalisation inside every row", "rounds": bench.rounds,
              "warmup": bench.warmup, "settle_s": settle, "paths": [n for n, _ in chosen], "command": command}
    results = {"config": config,
               "machine": {"device": "cpu", **machine_info()}, "latency": {}, "setup_s": {}, "failed": {}}
    total = len(bench.batch_sizes) * len(chosen) * (bench.rounds + bench.warmup)
    with torch.inference_mode(), tqdm(total=total, desc="bench --peers", unit="call", file=sys.stderr) as bar:
        for b in bench.batch_sizes:
            clips = torch.randint(0, 256, (b, 16, bench.size, bench.size, 3), dtype=torch.uint8,
                                  generator=torch.Generator().manual_seed(b))
            fns = build_rows(chosen, model, clips, bench, results, bar)
            results["latency"][str(b)] = time_rows(fns, clips, bench, settle, bar)
            del fns
            gc.collect()
    results["config"]["paths"] = [n for n, _ in chosen if all(n in lat for lat in results["latency"].values())]
    return results


def plotted_peers(results: dict) -> dict | None:
    """What peers.png shows: the rows measured at every batch size, when eager was (the ratios' reference)."""
    if not all(lat.get("eager") for lat in results["latency"].values()):
        return None
    return {**results, "latency": {b: {n: lat[n] for n in results["config"]["paths"]}
                                   for b, lat in results["latency"].items()}}


__all__ = ["PEERS", "build_rows", "machine_info", "plotted_peers", "run_peers", "time_rows"]
