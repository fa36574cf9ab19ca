"""Served throughput measured by ``perf_analyzer`` against in-process throughput, in one run.

Three series, each a list of concurrency levels:

* ``triton_clip``: the ``squeezetime`` model (one random uint8 clip per request, Triton's dynamic batcher);
* ``triton_video``: the ``squeezetime_video`` model with a real-length encoded video (10 s, 640x360, H.264)
  per request, decoded and sampled by the server;
* ``torchserve_clip``: TorchServe with the same model archived, one ``.npy`` clip per request;
* ``budget``: the latency of a cheap video request alone, and while two clients keep sending 8K videos (over the
  default pixel budget: each is refused, but only after it was uploaded and opened) - the decode budget's
  promise that expensive videos do not hold up cheap ones (Python client: a latency, not a throughput).

The reference is the same model and backend in this process (``squeezetime.load(model, backend=...).scores``
on full batches, the server's work per batch; the backend is named explicitly on both sides, because what
``auto`` picks depends on each environment's engines and disk cache), measured right before each clip level (``adjacent``): the machine is shared and
its speed drifts, so each served level is compared with the in-process speed of the same minutes.
"""
from __future__ import annotations

import json
import os
import platform
import sys
from contextlib import contextmanager
from pathlib import Path

import numpy as np

from . import perf_analyzer as pa
from .triton.bench import in_process_classifier, in_process_throughput

VIDEO_SECONDS, VIDEO_SIZE, VIDEO_FPS = 10, (360, 640), 25


def real_length_video(seed: int = 11) -> bytes:
    """A 10 s 640x360 H.264 demo-motion video, as users send (not a 3 s toy clip)."""
    from squeezetime.synthetic import make_video

    h, w = VIDEO_SIZE
    return make_video(seed % 8, seed=seed, num_frames=VIDEO_SECONDS * VIDEO_FPS, height=h, width=w)


def over_budget_video(frames: int = 3) -> bytes:
    """An 8K (7680x4320) H.264 video of noise, several MB: over the default max_pixels (4096x2304)."""
    import io

    import av

    rng = np.random.default_rng(0)
    buf = io.BytesIO()
    with av.open(buf, mode="w", format="mp4") as out:
        stream = out.add_stream("libx264", rate=25)
        stream.height, stream.width, stream.pix_fmt = 4320, 7680, "yuv420p"
        stream.options = {"preset": "ultrafast", "crf": "35"}
        for _ in range(frames):
            noise = rng.integers(0, 256, (4320 // 8, 7680 // 8, 3), dtype=np.uint8).repeat(8, 0).repeat(8, 1)
            out.mux(stream.encode(av.VideoFrame.from_ndarray(noise, format="rgb24")))
        out.mux(stream.encode())
    return buf.getvalue()


def _flood(grpc_url: str, video: bytes, stop, answers) -> None:
    """A hostile client in its own process: ``video`` back to back until ``stop``; (seconds, answer) per request."""
    import time

    from .triton.client import TritonClient, TritonRequestError, TritonUnavailable

    done = []
    with TritonClient(grpc_url, timeout=300) as client:
        while not stop.is_set():
            t0 = time.perf_counter()
            try:
                client.classify(video, views="10x3", topk=1)
                done.append((time.perf_counter() - t0, "accepted"))
            except (TritonRequestError, TritonUnavailable) as e:
                done.append((time.perf_counter() - t0, str(e)[:160]))
    answers.put(done)


def bench_budget(grpc_url: str, *, rounds: int = 7) -> dict:
    """Cheap request latency alone vs beside two clients sending over-budget (8K) videos back to back. The two
    run in processes of their own, as other clients do: threads here would share this process's GIL with the
    cheap request's client and measure the client, not the server."""
    import multiprocessing
    import statistics
    import time

    from squeezetime.synthetic import make_video
    from .triton.client import TritonClient

    cheap, big = make_video(1, seed=21), over_budget_video()

    def timed(client, video) -> float:
        t0 = time.perf_counter()
        client.classify(video, views="1x1", topk=1)
        return time.perf_counter() - t0

    ctx = multiprocessing.get_context("spawn")
    stop, answers = ctx.Event(), ctx.Queue()
    with TritonClient(grpc_url, timeout=300) as client:
        timed(client, cheap)  # connection, caches
        alone = [timed(client, cheap) for _ in range(rounds)]
        flooders = [ctx.Process(target=_flood, args=(grpc_url, big, stop, answers), daemon=True) for _ in range(2)]
        for f in flooders:
            f.start()
        time.sleep(3.0)  # spawned interpreters import and connect, then flood
        beside = [timed(client, cheap) for _ in range(rounds)]
        stop.set()
        refusals = [r for _ in flooders for r in answers.get(timeout=300)]
        for f in flooders:
            f.join(timeout=60)
    a, b = statistics.median(alone), statistics.median(beside)
    return {"cheap_video": "demo clip 320x240, 1x1", "over_budget_video": f"8K H.264, {len(big)} bytes, 10x3",
            "over_budget_clients": "2 processes", "cheap_alone_s": alone, "cheap_beside_s": beside,
            "median_alone_s": a, "median_beside_s": b, "beside_over_alone": b / a,
            "over_budget_requests": len(refusals),
            "over_budget_median_s": statistics.median(r[0] for r in refusals) if refusals else None,
            "over_budget_answer": refusals[0][1] if refusals else None}


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
    from .triton.repository import RepoOptions, write_repository
    from .triton.server import TritonServer

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
    from .torchserve import server
    from .torchserve.archive import build_archive
    from .torchserve.client import encode_npy

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
    from .torchserve.archive import ArchiveOptions

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


def run_benchmark(model, *, out, concurrencies=(1, 2, 4, 8, 16), max_batch_size: int = 8, dtype: str = "float32",
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
    plot(report, out / "bench_perf.png")
    return report


def plot(report: dict, path: Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4.2))
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
    for ax in (ax1, ax2):
        ax.legend(fontsize=7)
        ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


__all__ = ["plot", "real_length_video", "run_benchmark"]
