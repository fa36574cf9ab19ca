"""Issue 18: what a still-image upload of 200,000 frames costs, and what it costs a cheap request beside it.

    python benchmarks/bench_refusal.py --out build/bench_refusal [--rounds 5] [--no-triton] [--torchserve]

1. In process: ``sample_clips`` on the 200,000-frame still H.264 video (``make_still_video``, 3.4 MB) for 1x1 and
   10x3, until its ``BudgetError``: seconds (median of ``--rounds``, views interleaved) and frames decoded.
2. Through a real tritonserver serving the demo model with the default repository options (what
   ``squeezetime serve --demo`` starts): a cheap real video (a demo video, 1x1) alone, and beside two still uploads
   (1x1, the demo's default views, and 10x3), sent as soon as both uploads reached the video model (its request
   counter); rounds interleave alone / beside 1x1 / beside 10x3. Also the still upload's own answer time
   (INVALID_ARGUMENT), and the clip model's batch sizes under 16 concurrent requests (whether dynamic batching
   merges requests is a timing, so the tests do not assert it).
3. With ``--torchserve``: the still upload's answer (HTTP 400) and the cheap request through TorchServe (the
   archive's defaults: batch 4, max batch delay 5 ms), interleaved.
Writes ``bench_refusal.json`` and ``bench_refusal.png`` into ``--out`` and prints the JSON. Compare the ratios:
this project's machines are shared and noisy.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np


def in_process(still: str, rounds: int) -> dict:
    import squeezetime
    from squeezetime.video import DEFAULT_BUDGET, BudgetError, DecodeMeter
    from squeezetime.video.generate import make_test_video

    squeezetime.sample_clips(make_test_video(frames=30), "1x1")  # imports, codec and resize set-up
    seconds: dict[str, list[float]] = {"1x1": [], "10x3": []}
    frames: dict[str, int] = {}
    for _ in range(rounds):
        for views in seconds:
            meter = DecodeMeter(DEFAULT_BUDGET, still)
            started = time.perf_counter()
            try:
                squeezetime.sample_clips(still, views, meter=meter)
                raise SystemExit("the still video was accepted")
            except BudgetError:
                seconds[views].append(time.perf_counter() - started)
            frames[views] = meter.frames_decoded
    return {views: {"median_s": statistics.median(s), "all_s": s, "frames_decoded": frames[views]}
            for views, s in seconds.items()}


def classify_seconds(url: str, data: bytes, views: str) -> tuple[float, str]:
    """(seconds, outcome) of one squeezetime_video request: "ok" or the gRPC status."""
    import tritonclient.grpc as grpcclient
    from tritonclient.utils import InferenceServerException

    inputs = [grpcclient.InferInput("VIDEO", [1, 1], "BYTES"), grpcclient.InferInput("VIEWS", [1, 1], "BYTES")]
    inputs[0].set_data_from_numpy(np.array([[data]], dtype=np.object_))
    inputs[1].set_data_from_numpy(np.array([[views.encode()]], dtype=np.object_))
    client = grpcclient.InferenceServerClient(url)
    try:
        started = time.perf_counter()
        try:
            client.infer("squeezetime_video", inputs, client_timeout=300)
            outcome = "ok"
        except InferenceServerException as e:
            outcome = str(e.status())
        return time.perf_counter() - started, outcome
    finally:
        client.close()


UPLOAD_VIEWS = ("1x1", "10x3")  # the uploads' views: the demo's default, and the costliest
DECODE = 'squeezetime_stage_seconds_{}{{model="squeezetime_video",stage="decode"}}'


REQUESTS = 'squeezetime_requests_total{model="squeezetime_video"}'


def beside_two_uploads(url: str, metrics_url: str, cheap: bytes, uploaders, still_path: str,
                       views: str) -> tuple[float, list]:
    """The cheap request's seconds when sent as soon as two still uploads have reached the video model (from two
    other processes, as other clients would: their serialisation does not share this interpreter); the uploads'
    (seconds, outcome)."""
    from squeezetime.bench.prometheus import scrape, wait_for_metric

    before = scrape(metrics_url)[REQUESTS]
    uploads = [uploaders.submit(upload, url, still_path, views) for _ in range(2)]
    wait_for_metric(metrics_url, REQUESTS, before + 2, timeout=300, poll=0.002)
    seconds, outcome = classify_seconds(url, cheap, "1x1")
    assert outcome == "ok", outcome
    return seconds, [u.result(timeout=300) for u in uploads]


def upload(url: str, still_path: str, views: str = "10x3") -> tuple[float, str]:
    return classify_seconds(url, Path(still_path).read_bytes(), views)


def through_triton(still_path: str, cheap: bytes, rounds: int, work: Path) -> dict:
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    import squeezetime
    from squeezetime.bench.prometheus import scrape
    from squeezetime.serving.triton import RepoOptions, TritonServer, write_repository
    from squeezetime.triton import TritonClient

    repo = write_repository(work / "repo", squeezetime.demo_model(), options=RepoOptions())
    server = TritonServer(repo, start_timeout=240)
    uploaders = ProcessPoolExecutor(2, mp_context=multiprocessing.get_context("spawn"))
    try:
        server.start()
        url = server.grpc_url
        for _ in range(2):
            classify_seconds(url, cheap, "1x1")  # connections, caches
        list(uploaders.map(upload, [url] * 2, [still_path] * 2))  # the uploaders' imports and connections
        before = scrape(server.metrics_url)
        alone_upload = [upload(url, still_path)[0] for _ in range(rounds)]
        after = scrape(server.metrics_url)
        upload_decode_s = (after[DECODE.format("sum")] - before[DECODE.format("sum")]) / rounds
        alone: list[float] = []
        beside: dict[str, list[float]] = {views: [] for views in UPLOAD_VIEWS}
        uploads: dict[str, list] = {views: [] for views in UPLOAD_VIEWS}
        for _ in range(rounds):  # interleaved: the machine's load drifts
            alone.append(classify_seconds(url, cheap, "1x1")[0])
            for views in UPLOAD_VIEWS:
                seconds, answered = beside_two_uploads(url, server.metrics_url, cheap, uploaders, still_path, views)
                beside[views].append(seconds)
                uploads[views] += answered
        with TritonClient(url, timeout=300) as client:
            sizes_before = client.batch_sizes()
            with ThreadPoolExecutor(16) as pool:
                list(pool.map(lambda _: classify_seconds(url, cheap, "1x1"), range(16)))
            sizes_after = client.batch_sizes()
    finally:
        uploaders.shutdown()
        server.cleanup()
    return {"cheap_alone_s": alone,
            "cheap_beside_two_uploads_s": beside,
            "ratio_median": {v: statistics.median(b) / statistics.median(alone) for v, b in beside.items()},
            "upload_alone_10x3_s": alone_upload, "upload_alone_10x3_server_decode_s": upload_decode_s,
            "upload_beside_s": {v: [s for s, _ in u] for v, u in uploads.items()},
            "upload_outcomes": sorted({o for u in uploads.values() for _, o in u}),
            "clip_model_batch_sizes_under_16_concurrent": {
                size: sizes_after.get(size, 0) - sizes_before.get(size, 0)
                for size in sizes_after if sizes_after.get(size, 0) > sizes_before.get(size, 0)}}


def through_torchserve(still_path: str, cheap: bytes, rounds: int, work: Path) -> dict:
    """Seconds of a still upload's answer (400) and of the cheap request's, through a TorchServe with the archive's
    defaults; interleaved."""
    from squeezetime.serving.torchserve import server
    from squeezetime.serving.torchserve.archive import build_archive
    from squeezetime.serving.torchserve.client import RestClient

    build_archive(work / "store")
    run = work / "ts_run"
    info = server.start(work / "store", run_dir=run, ports=server.free_ports(), timeout=240)
    try:
        rest = RestClient(info.inference_url, timeout=300)
        still = Path(still_path).read_bytes()
        rest.predict_raw(cheap)  # connection, first request
        seconds: dict[str, list[float]] = {"cheap_1x1": [], "still_1x1": [], "still_10x3": []}
        statuses = set()
        for _ in range(rounds):
            for key, data, views in (("cheap_1x1", cheap, "1x1"), ("still_1x1", still, "1x1"),
                                     ("still_10x3", still, "10x3")):
                started = time.perf_counter()
                status, _, _ = rest.predict_raw(data, views=views)
                seconds[key].append(time.perf_counter() - started)
                statuses.add((key, status))
    finally:
        server.stop(run, timeout=60)
    return {"seconds": seconds, "median_s": {k: statistics.median(v) for k, v in seconds.items()},
            "statuses": sorted(f"{k}: {s}" for k, s in statuses)}


def plot(result: dict, path: Path) -> None:
    from squeezetime.bench.plot import figure

    with figure(path, 1, 2, figsize=(10, 4), dpi=100) as (_, axes):
        local = result["in_process"]
        axes[0].bar(list(local), [local[v]["median_s"] for v in local], color="tab:blue")
        axes[0].set_title("200,000-frame still video refused, in process")
        axes[0].set_ylabel("seconds (median)")
        for i, v in enumerate(local):
            axes[0].text(i, local[v]["median_s"], f"{local[v]['frames_decoded']} frames decoded", ha="center",
                         va="bottom")
        triton = result.get("triton")
        if triton:
            beside = triton["cheap_beside_two_uploads_s"]
            values = [triton["cheap_alone_s"]] + [beside[v] for v in beside]
            ratios = ", ".join(f"x{triton['ratio_median'][v]:.2f}" for v in beside)
            axes[1].boxplot(values, tick_labels=["alone"] + [f"beside 2 {v} uploads" for v in beside])
            axes[1].set_title(f"cheap 1x1 request through Triton: {ratios} (medians)")
            axes[1].set_ylabel("seconds")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="build/bench_refusal")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--no-triton", action="store_true")
    parser.add_argument("--torchserve", action="store_true", help="also time the refusal through TorchServe")
    args = parser.parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)

    from squeezetime.cli.demo import write_demo_videos
    from squeezetime.video.generate import make_still_video

    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        still_path = make_still_video(work / "still.mp4", frames=200_000)
        cheap_path = write_demo_videos(str(work / "demo"), per_class=1)[1][0]
        result = {"still_video_bytes": os.path.getsize(still_path), "cpu_count": os.cpu_count(),
                  "load_average": os.getloadavg(), "in_process": in_process(still_path, args.rounds)}
        if not args.no_triton:
            result["triton"] = through_triton(str(still_path), Path(cheap_path).read_bytes(), args.rounds, work)
        if args.torchserve:
            result["torchserve"] = through_torchserve(str(still_path), Path(cheap_path).read_bytes(), args.rounds,
                                                      work)
    result["load_average_after"] = os.getloadavg()
    (out / "bench_refusal.json").write_text(json.dumps(result, indent=2))
    plot(result, out / "bench_refusal.png")
    json.dump(result, sys.stdout, indent=2)
    print()
    return 0


if __name__ == "__main__":
    sys.exit(main())
