"""Served vs in-process throughput: clips/s and p50/p95/p99 latency over gRPC at several concurrencies.

For ``squeezetime`` (CLIP input, one clip per request, as independent clients send them) and
``squeezetime_video`` (an encoded video per request), against the in-process throughput of the same model
and dtype, measured in the same run: before and after the served runs (the best is the reference), and right
before each CLIP level (``fraction_of_adjacent_in_process``), because a shared machine's speed drifts.
"""
from __future__ import annotations

import json
import os
import platform
import statistics
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np


def percentile(values: list[float], q: float) -> float:
    return float(np.percentile(np.asarray(values), q)) if values else float("nan")


def in_process_classifier(model, dtype: str, batch: int, threads: int, backend: str = "auto"):
    """What the served clip model runs: ``squeezetime.load(model, backend=..., dtype=...)``."""
    import copy

    import squeezetime

    return squeezetime.load(copy.deepcopy(model).eval(), backend=backend, dtype=dtype, batch_size=batch,
                            threads=threads)


def in_process_throughput(classifier, batch: int, seconds: float) -> dict:
    """clips/s of ``classifier.scores`` on batches of ``batch`` uint8 clips (the server's work per batch)."""
    d = classifier.data_config
    shape = (batch, d.num_frames, d.crop_size, d.crop_size, 3)
    clips = np.random.default_rng(0).integers(0, 256, shape, dtype=np.uint8)
    classifier.scores(clips)  # warm-up
    n, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds or n < 2:
        classifier.scores(clips)
        n += 1
    elapsed = time.perf_counter() - start
    return {"clips_per_s": n * batch / elapsed, "batch": batch, "iterations": n, "seconds": elapsed}


def _run_load(concurrency: int, requests: int, send, clips_per_request: int, progress=None) -> dict:
    """``requests`` calls of ``send(worker)`` from ``concurrency`` threads -> clips/s and latency percentiles."""
    latencies: list[float] = []
    lock = threading.Lock()
    counter = iter(range(requests))
    errors: list[str] = []

    def worker(w: int) -> None:
        while True:
            with lock:
                i = next(counter, None)
            if i is None:
                return
            t0 = time.perf_counter()
            try:
                send(w)
            except Exception as e:  # noqa: BLE001 - counted and reported
                with lock:
                    errors.append(str(e)[:200])
                continue
            with lock:
                latencies.append(time.perf_counter() - t0)
                if progress is not None:
                    progress.update(1)

    start = time.perf_counter()
    with ThreadPoolExecutor(concurrency) as pool:
        list(pool.map(worker, range(concurrency)))
    elapsed = time.perf_counter() - start
    ms = [x * 1000 for x in latencies]
    return {"concurrency": concurrency, "requests": len(latencies), "errors": len(errors),
            "first_error": errors[0] if errors else None, "seconds": elapsed,
            "clips_per_s": len(latencies) * clips_per_request / elapsed,
            "requests_per_s": len(latencies) / elapsed,
            "latency_ms": {"p50": percentile(ms, 50), "p95": percentile(ms, 95), "p99": percentile(ms, 99),
                           "mean": statistics.fmean(ms) if ms else float("nan")}}


def run_benchmark(model, *, out: str | os.PathLike, concurrencies=(1, 4, 8, 16), requests_per_level: int = 48,
                  video_requests_per_level: int = 32, views: str = "1x1", dtype: str = "float32",
                  max_batch_size: int = 8, in_process_seconds: float = 10.0, shared_memory: bool = False,
                  threads: int = 0, model_name: str = "model", backend: str = "optimized") -> dict:
    """Start a server on a fresh repository for ``model``, measure, stop it. Writes bench_serve.json/.png."""
    from tqdm import tqdm

    from squeezetime.synthetic import make_video
    from ..triton.client import TritonClient
    from .repository import RepoOptions, write_repository
    from .server import TritonServer

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    threads = threads or (os.cpu_count() or 1)
    # the same backend on both sides, named: what auto picks depends on each environment's engines and cache
    repo = write_repository(out / "repo", model, options=RepoOptions(max_batch_size=max_batch_size, dtype=dtype,
                                                                     num_threads=threads, backend=backend))
    classifier = in_process_classifier(model, dtype, max_batch_size, threads, backend)
    d = classifier.data_config
    clip = np.random.default_rng(1).integers(0, 256, (1, d.num_frames, d.crop_size, d.crop_size, 3), dtype=np.uint8)
    videos = [make_video(k % 8, seed=700_000 + k, container=("mp4", "avi", "webm", "mkv")[k % 4]) for k in range(8)]
    clips_per_video = d.clips_per_video(views)

    def measure(seconds: float) -> dict:
        return in_process_throughput(classifier, max_batch_size, seconds)

    reference = [measure(in_process_seconds)]
    results: dict = {"clip": [], "video": []}
    total = len(concurrencies) * (requests_per_level + video_requests_per_level)
    with TritonServer(repo, log_path=out / "tritonserver.log") as server, \
            tqdm(total=total, desc="bench-serve", unit="req", file=sys.stderr) as bar:
        clients = [TritonClient(server.grpc_url, timeout=600) for _ in range(max(concurrencies))]
        for c in clients[:2]:  # warm-up: load paths, allocate shm
            c.classify_clips(clip, shared_memory=shared_memory)
            c.classify(videos[0], views=views, topk=1)
        for conc in concurrencies:
            # this machine is shared and noisy: an in-process measurement right before each served level
            adjacent = measure(in_process_seconds / 2)
            reference.append(adjacent)
            bar.set_postfix(model="squeezetime", concurrency=conc)
            results["clip"].append(_run_load(conc, requests_per_level,
                                             lambda w: clients[w].classify_clips(clip, shared_memory=shared_memory),
                                             1, bar))
            results["clip"][-1]["adjacent_in_process_clips_per_s"] = adjacent["clips_per_s"]
            results["clip"][-1]["fraction_of_adjacent_in_process"] = \
                results["clip"][-1]["clips_per_s"] / adjacent["clips_per_s"]
        for conc in concurrencies:
            bar.set_postfix(model="squeezetime_video", concurrency=conc)
            counter = iter(range(10**9))
            results["video"].append(_run_load(
                conc, video_requests_per_level,
                lambda w: clients[w].classify(videos[next(counter) % len(videos)], views=views, topk=1),
                clips_per_video, bar))
        batches = clients[0].batch_sizes()
        for c in clients:
            c.close()
    reference.append(measure(in_process_seconds))
    in_proc = max(r["clips_per_s"] for r in reference)
    for entry in results["clip"] + results["video"]:
        entry["fraction_of_in_process"] = entry["clips_per_s"] / in_proc
    report = {
        "model": model_name, "dtype": dtype, "max_batch_size": max_batch_size, "views": views,
        "shared_memory": shared_memory, "threads": threads,
        "machine": {"cpus": os.cpu_count(), "processor": platform.processor() or platform.machine(),
                    "python": platform.python_version()},
        "in_process": {"clips_per_s": in_proc, "backend": repr(classifier.backend), "runs": reference},
        "served": results, "clip_model_batch_sizes": {str(k): v for k, v in sorted(batches.items())},
    }
    (out / "bench_serve.json").write_text(json.dumps(report, indent=2))
    plot(report, out / "bench_serve.png")
    return report


def plot(report: dict, path: Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4.2))
    for key, label, marker in (("clip", "squeezetime (CLIP)", "o"), ("video", f"squeezetime_video ({report['views']})",
                                                                      "s")):
        rows = report["served"][key]
        conc = [r["concurrency"] for r in rows]
        ax1.plot(conc, [r["clips_per_s"] for r in rows], marker=marker, label=label)
        for q, style in (("p50", "-"), ("p95", "--"), ("p99", ":")):
            ax2.plot(conc, [r["latency_ms"][q] for r in rows], style, marker=marker, label=f"{label} {q}")
    ref = report["in_process"]["clips_per_s"]
    ax1.axhline(ref, color="k", linestyle="--", label="in-process")
    ax1.axhline(0.85 * ref, color="grey", linestyle=":", label="85 % of in-process")
    ax1.set(xlabel="concurrent clients", ylabel="clips / s", title=f"throughput ({report['model']}, "
            f"{report['dtype']}, {report['machine']['cpus']} CPUs)")
    ax2.set(xlabel="concurrent clients", ylabel="latency (ms)", title="request latency over gRPC", yscale="log")
    for ax in (ax1, ax2):
        ax.set_xticks([r["concurrency"] for r in report["served"]["clip"]])
        ax.legend(fontsize=7)
        ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


__all__ = ["in_process_classifier", "in_process_throughput", "plot", "run_benchmark"]
