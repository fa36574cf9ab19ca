"""Served against in-process throughput, for ``squeezetime bench-serve`` and ``squeezetime bench-perf``.

The reference is the same model and backend in this process (``squeezetime.load(model, backend=...).scores``
on full batches, the server's work per batch; the backend is named explicitly on both sides, because what
``auto`` picks depends on each environment's engines and disk cache), measured right before each served level
(``adjacent``): the machine is shared and its speed drifts, so each served level is compared with the
in-process speed of the same minutes.

``run_serve_benchmark`` (bench-serve): our Python gRPC client, clips/s and p50/p95/p99 latency at several
concurrencies, for ``squeezetime`` (CLIP input, one clip per request, as independent clients send them) and
``squeezetime_video`` (an encoded video per request); the in-process reference is also measured before and
after the served runs (the best is ``fraction_of_in_process``'s reference). Writes bench_serve.json/.png.

``run_perf_benchmark`` (bench-perf): Triton's own client, ``perf_analyzer`` (``bench.perf_analyzer``), one
call per concurrency level, in three series:

* ``triton_clip``: the ``squeezetime`` model (one random uint8 clip per request, Triton's dynamic batcher);
* ``triton_video``: the ``squeezetime_video`` model with a real-length encoded video (10 s, 640x360, H.264)
  per request, decoded and sampled by the server;
* ``torchserve_clip``: TorchServe with the same model archived, one ``.npy`` clip per request;

and ``budget`` (``bench.decode_budget``): a cheap video's latency alone and beside over-budget floods.
Writes bench_perf.json/.png.
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
from contextlib import contextmanager
from pathlib import Path

import numpy as np

from . import perf_analyzer as pa
from .decode_budget import bench_budget
from .plot import figure, legend_and_grid

VIDEO_SECONDS, VIDEO_SIZE, VIDEO_FPS = 10, (360, 640), 25


def real_length_video(seed: int = 11) -> bytes:
    """A 10 s 640x360 H.264 demo-motion video, as users send (not a 3 s toy clip)."""
    from ..synthetic import make_video

    h, w = VIDEO_SIZE
    return make_video(seed % 8, seed=seed, num_frames=VIDEO_SECONDS * VIDEO_FPS, height=h, width=w)


def percentile(values: list[float], q: float) -> float:
    return float(np.percentile(np.asarray(values), q)) if values else float("nan")


def in_process_classifier(model, dtype: str, batch: int, threads: int, backend: str = "auto"):
    """What the served clip model runs: ``squeezetime.load(model, backend=..., dtype=...)``."""
    import copy

    from ..classifier import load

    return load(copy.deepcopy(model).eval(), backend=backend, dtype=dtype, batch_size=batch, threads=threads)


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


def run_load(concurrency: int, requests: int, send, clips_per_request: int, progress=None) -> dict:
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


def run_serve_benchmark(model, *, out: str | os.PathLike, concurrencies=(1, 4, 8, 16), requests_per_level: int = 48,
                        video_requests_per_level: int = 32, views: str = "1x1", dtype: str = "float32",
                        max_batch_size: int = 8, in_process_seconds: float = 10.0, shared_memory: bool = False,
                        threads: int = 0, model_name: str = "model", backend: str = "optimized") -> dict:
    """Start a server on a fresh repository for ``model``, measure, stop it. Writes bench_serve.json/.png."""
    from tqdm import tqdm

    from ..serving.triton.client import TritonClient
    from ..serving.triton.repository import RepoOptions, write_repository
    from ..serving.triton.server import TritonServer
    from ..synthetic import make_video

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
            results["clip"].append(run_load(conc, requests_per_level,
                                             lambda w: clients[w].classify_clips(clip, shared_memory=shared_memory),
                                             1, bar))
            results["clip"][-1]["adjacent_in_process_clips_per_s"] = adjacent["clips_per_s"]
            results["clip"][-1]["fraction_of_adjacent_in_process"] = \
                results["clip"][-1]["clips_per_s"] / adjacent["clips_per_s"]
        for conc in concurrencies:
            bar.set_postfix(model="squeezetime_video", concurrency=conc)
            counter = iter(range(10**9))
            results["video"].append(run_load(
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
    plot_serve_report(report, out / "bench_serve.png")
    return report


def _fraction(row: dict, adjacent: dict, clips_per_request: int = 1) -> dict:
    row["clips_per_s"] = row["requests_per_s"] * clips_per_request
    row["adjacent_in_process_clips_per_s"] = adjacent["clips_per_s"]
    row["fraction_of_in_process"] = row["clips_per_s"] / adjacent["clips_per_s"]
    row["p99_over_p50"] = row["latency_ms"]["p99"] / row["latency_ms"]["p50"]
    return row


def _clip_shape(data_config) -> str:
    return f"CLIP:{data_config.num_frames},{data_config.crop_size},{data_config.crop_size},3"


def bench_triton(model, out: Path, classifier, *, concurrencies, max_batch_size, threads, dtype, in_process_seconds,
                 video: bool, requests_per_window: int, bar, backend: str) -> dict:
    from ..serving.triton.repository import RepoOptions, write_repository
    from ..serving.triton.server import TritonServer

    repo = write_repository(out / "triton_repo", model, options=RepoOptions(
        max_batch_size=max_batch_size, num_threads=threads, dtype=dtype, backend=backend))
    video_input = pa.triton_bytes_input(out / "video_input.json", {"VIDEO": real_length_video()})
    results = {"triton_clip": [], "triton_video": []}
    with TritonServer(repo, log_path=out / "tritonserver.log") as server:
        url = server.grpc_url.replace("grpc://", "")
        for conc in concurrencies:
            adjacent = in_process_throughput(classifier, max_batch_size, in_process_seconds)
            row = pa.measure(pa.Level("squeezetime", url, conc, shape=_clip_shape(classifier.data_config),
                                      requests_per_window=requests_per_window))
            results["triton_clip"].append(_fraction(row, adjacent))
            bar.update(1)
        for conc in concurrencies if video else ():
            row = pa.measure(pa.Level("squeezetime_video", url, conc, input_data=video_input,
                                      requests_per_window=max(8, requests_per_window // 4)))
            results["triton_video"].append(row)
            bar.update(1)
        if video:
            results["budget"] = bench_budget(server.grpc_url)
            bar.update(1)
    return results


@contextmanager
def torchserve_clip_server(out: Path, classifier, options, checkpoint=None):
    """TorchServe serving an archive of the model built with ``options`` (an ``ArchiveOptions``), and one random
    uint8 clip to send it. Yields (server info, model name, the clip as .npy bytes, perf_analyzer's
    ``--input-data`` file for it); stops the server on the way out."""
    from ..serving.torchserve import server
    from ..serving.torchserve.archive import build_archive
    from ..serving.torchserve.client import encode_npy

    d = classifier.data_config
    clip = np.random.default_rng(3).integers(0, 256, (d.num_frames, d.crop_size, d.crop_size, 3), dtype=np.uint8)
    body = out / "clip.npy"
    body.write_bytes(encode_npy(clip))
    data = pa.torchserve_input(out / "torchserve_input.json", body)
    store, run_dir = out / "model_store", out / "torchserve_run"
    mar = build_archive(store, checkpoint=checkpoint, options=options)
    info = server.start(store, run_dir=run_dir, ports=server.free_ports(), timeout=300)
    try:
        yield info, mar.stem, body.read_bytes(), data
    finally:
        server.stop(run_dir, timeout=60)


def bench_torchserve(out: Path, classifier, *, concurrencies, batch_size, threads, in_process_seconds,
                     requests_per_window: int, bar, backend: str, checkpoint=None) -> list[dict]:
    from ..serving.torchserve.archive import ArchiveOptions

    rows = []
    options = ArchiveOptions(batch_size=batch_size, threads=threads, backend=backend)
    with torchserve_clip_server(out, classifier, options, checkpoint) as (info, model, _, data):
        url = info.inference_url.replace("http://", "")
        for conc in concurrencies:
            adjacent = in_process_throughput(classifier, batch_size, in_process_seconds)
            row = pa.measure(pa.Level(model, url, conc, service_kind="torchserve", protocol="http",
                                      input_data=data, requests_per_window=requests_per_window))
            rows.append(_fraction(row, adjacent))
            bar.update(1)
    return rows


def run_perf_benchmark(model, *, out, concurrencies=(1, 2, 4, 8, 16), max_batch_size: int = 8, dtype: str = "float32",
                       threads: int = 0, in_process_seconds: float = 4.0, requests_per_window: int = 40,
                       torchserve: bool = True, torchserve_batch_size: int = 8, video: bool = True,
                       checkpoint=None, model_name: str = "model", backend: str = "optimized") -> dict:
    """Measure, write ``bench_perf.json`` and ``bench_perf.png`` into ``out``, return the report."""
    from tqdm import tqdm

    binary = pa.check_runs()
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    threads = threads or (os.cpu_count() or 1)
    classifier = in_process_classifier(model, dtype, max_batch_size, threads, backend)
    levels = len(concurrencies) * (1 + bool(video) + bool(torchserve)) + bool(video)
    report = {"model": model_name, "dtype": dtype, "max_batch_size": max_batch_size, "threads": threads,
              "client": f"perf_analyzer ({binary})", "backend": repr(classifier.backend),
              "video": {"seconds": VIDEO_SECONDS, "size": f"{VIDEO_SIZE[1]}x{VIDEO_SIZE[0]}", "views": "1x1"},
              "machine": {"cpus": os.cpu_count(), "processor": platform.processor() or platform.machine(),
                          "load_average_at_start": os.getloadavg()}}
    with tqdm(total=levels, desc="bench-perf", unit="level", file=sys.stderr) as bar:
        report.update(bench_triton(model, out, classifier, concurrencies=concurrencies, max_batch_size=max_batch_size,
                                   threads=threads, dtype=dtype, in_process_seconds=in_process_seconds, video=video,
                                   requests_per_window=requests_per_window, bar=bar, backend=backend))
        if torchserve:
            report["torchserve_clip"] = bench_torchserve(
                out, classifier, concurrencies=concurrencies, batch_size=torchserve_batch_size, threads=threads,
                in_process_seconds=in_process_seconds, requests_per_window=requests_per_window, bar=bar,
                backend=backend, checkpoint=checkpoint)
    report["machine"]["load_average_at_end"] = os.getloadavg()
    (out / "bench_perf.json").write_text(json.dumps(report, indent=2))
    plot_perf_report(report, out / "bench_perf.png")
    return report


def plot_serve_report(report: dict, path: Path) -> None:
    """bench-serve's PNG: clips/s against concurrency (in-process as a line), and the latency percentiles."""
    with figure(path, 1, 2, figsize=(11, 4.2)) as (_, (ax1, ax2)):
        for key, label, marker in (("clip", "squeezetime (CLIP)", "o"),
                                   ("video", f"squeezetime_video ({report['views']})", "s")):
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
        legend_and_grid((ax1, ax2))


def plot_perf_report(report: dict, path: Path) -> None:
    """bench-perf's PNG: served clips/s as a share of in-process, and perf_analyzer's p50/p99 latency."""
    with figure(path, 1, 2, figsize=(11, 4.2)) as (_, (ax1, ax2)):
        for key, label, marker in (("triton_clip", "Triton squeezetime (CLIP)", "o"),
                                   ("torchserve_clip", "TorchServe (.npy clip)", "^")):
            rows = report.get(key) or []
            if rows:
                ax1.plot([r["concurrency"] for r in rows], [100 * r["fraction_of_in_process"] for r in rows],
                         marker=marker, label=label)
        ax1.axhline(90, color="grey", linestyle=":", label="90 % (Triton target)")
        ax1.axhline(75, color="grey", linestyle="--", label="75 % (TorchServe target)")
        ax1.set(xlabel="concurrency (perf_analyzer)", ylabel="% of in-process clips/s", xscale="log",
                title=f"served / in-process ({report['model']}, {report['machine']['cpus']} CPUs)")
        for key, label, marker in (("triton_clip", "Triton CLIP", "o"), ("torchserve_clip", "TorchServe clip", "^"),
                                   ("triton_video", f"Triton video {report['video']['seconds']} s "
                                                    f"{report['video']['size']}", "s")):
            rows = report.get(key) or []
            if rows:
                conc = [r["concurrency"] for r in rows]
                ax2.plot(conc, [r["latency_ms"]["p50"] for r in rows], "-", marker=marker, label=f"{label} p50")
                ax2.plot(conc, [r["latency_ms"]["p99"] for r in rows], ":", marker=marker, label=f"{label} p99")
        ax2.set(xlabel="concurrency (perf_analyzer)", ylabel="latency (ms)", xscale="log", yscale="log",
                title="latency measured by perf_analyzer")
        legend_and_grid((ax1, ax2))


__all__ = ["VIDEO_FPS", "VIDEO_SECONDS", "VIDEO_SIZE", "bench_torchserve", "bench_triton", "in_process_classifier",
           "in_process_throughput", "percentile", "plot_perf_report", "plot_serve_report", "real_length_video",
           "run_load", "run_perf_benchmark", "run_serve_benchmark", "torchserve_clip_server"]
