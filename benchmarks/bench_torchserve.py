"""Requests/s and p50/p95 latency: in-process vs a real TorchServe (vs Triton when available), same run.

    python benchmarks/bench_torchserve.py --out build/bench_torchserve [--checkpoint PATH] [--requests 24]

Two request kinds: ``clip`` (one uint8 (16, 224, 224, 3) clip as .npy, ~2.4 MB) and ``video`` (a demo
video, decoded and sampled with the 1x1 view by the server). Concurrency 1, 4, 8: that many client
threads, each sending its next request as soon as the previous one answered. In-process: the same
threads calling ``squeezetime.predict`` on one model in this process (no HTTP, no batching).
TorchServe: the archive's defaults (1 worker, batch 4, max batch delay 5 ms). Triton: the
``squeezetime.serving.triton`` deployment when it can be started here; otherwise reported as skipped.
Writes ``bench_torchserve.json`` and ``bench_torchserve.png`` into ``--out`` and prints the JSON.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

CONCURRENCY = (1, 4, 8)
KINDS = ("clip", "video")


def percentile(values, q):
    return float(np.percentile(np.asarray(values, dtype=float), q)) if values else float("nan")


def run_level(send, payload, concurrency: int, requests: int, progress) -> dict:
    """``requests`` calls of ``send(payload)`` from ``concurrency`` threads; latency per call, wall overall."""
    latencies, errors = [], []
    lock = threading.Lock()
    counter = iter(range(requests))

    def worker():
        while True:
            with lock:
                if next(counter, None) is None:
                    return
            t0 = time.perf_counter()
            try:
                send(payload)
            except Exception as e:  # noqa: BLE001 -- recorded, reported
                errors.append(repr(e)[:200])
            with lock:
                latencies.append(time.perf_counter() - t0)
                progress.update(1)

    start = time.perf_counter()
    with ThreadPoolExecutor(concurrency) as pool:
        for f in [pool.submit(worker) for _ in range(concurrency)]:
            f.result()
    wall = time.perf_counter() - start
    return {"concurrency": concurrency, "requests": requests, "errors": len(errors), "first_error": errors[:1],
            "req_per_s": requests / wall, "p50_ms": 1000 * percentile(latencies, 50),
            "p95_ms": 1000 * percentile(latencies, 95), "wall_s": wall}


def make_payloads(work: Path) -> dict:
    import squeezetime
    from squeezetime.cli.demo import write_demo_videos

    video_path, _ = write_demo_videos(str(work / "videos"), per_class=1)[0]
    clip = squeezetime.sample_clips(video_path, "1x1")[0]
    return {"video": Path(video_path).read_bytes(), "clip": np.ascontiguousarray(clip), "video_path": video_path}


def in_process_senders(model):
    import squeezetime

    def clip(c):
        return squeezetime.predict(model, c[None], topk=5)

    def video(b):
        return squeezetime.predict(model, b, views="1x1", topk=5)

    return {"clip": clip, "video": video}


def torchserve_target(work: Path, checkpoint: str | None, stack):
    from squeezetime.serving.torchserve import server
    from squeezetime.serving.torchserve.archive import build_archive
    from squeezetime.serving.torchserve.client import RestClient

    store = work / "ts_store"
    build_archive(store, checkpoint=checkpoint)
    info = server.start(store, run_dir=work / "ts_run", ports=server.free_ports(), timeout=240)
    stack.append(lambda: server.stop(info.run_dir))
    rest = RestClient(info.inference_url)
    return {"clip": lambda c: rest.predict(c, topk=5), "video": lambda b: rest.predict(b, views="1x1", topk=5)}


def triton_target(work: Path, checkpoint: str | None, stack):
    """Triton through the package's own deployment (squeezetime.serving.triton), when it starts here."""
    try:
        from squeezetime.serving.triton.client import TritonClient
        from squeezetime.serving.triton.repository import write_repository
        from squeezetime.serving.triton.server import TritonServer
    except Exception as e:  # noqa: BLE001
        return None, f"Triton skipped: squeezetime.serving.triton not importable ({e})"
    try:
        repo = write_repository(work / "triton_repo", checkpoint=checkpoint) if checkpoint else \
            write_repository(work / "triton_repo", __import__("squeezetime").demo_model())
        srv = TritonServer(repo, log_path=work / "tritonserver.log").start()
        stack.append(srv.stop)
        client = TritonClient(srv.grpc_url, timeout=300)
        stack.append(client.close)
        return {"clip": lambda c: client.classify_clips(c[None]),
                "video": lambda b: client.classify(b, views="1x1", topk=5)}, None
    except Exception as e:  # noqa: BLE001 -- report, do not fail the TorchServe comparison
        return None, f"Triton skipped: could not be started here ({type(e).__name__}: {str(e)[:300]})"


def plot(report: dict, path: Path) -> None:
    from squeezetime.bench.plot import figure

    with figure(path, 1, 3, figsize=(15, 4.2), dpi=110) as (fig, axes):
        for target, rows in report["results"].items():
            for kind, style in (("clip", "-o"), ("video", "--s")):
                pts = [r for r in rows if r["kind"] == kind]
                if not pts:
                    continue
                c = [r["concurrency"] for r in pts]
                axes[0].plot(c, [r["req_per_s"] for r in pts], style, label=f"{target} {kind}")
                axes[1].plot(c, [r["p50_ms"] for r in pts], style, label=f"{target} {kind}")
                axes[2].plot(c, [r["p95_ms"] for r in pts], style, label=f"{target} {kind}")
        for ax, title in zip(axes, ("requests/s", "p50 latency (ms)", "p95 latency (ms)")):
            ax.set_title(title)
            ax.set_xlabel("concurrent clients")
            ax.set_xticks(CONCURRENCY)
            ax.grid(alpha=0.3)
        axes[0].legend(fontsize=8)
        fig.suptitle(f"SqueezeTime {report['model']} on {report['machine']}", fontsize=10)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", default="build/bench_torchserve")
    parser.add_argument("--checkpoint", default=None, help="default: the demo model")
    parser.add_argument("--requests", type=int, default=24, help="requests per (target, kind, concurrency)")
    parser.add_argument("--no-triton", action="store_true")
    args = parser.parse_args(argv)

    import torch
    from tqdm import tqdm

    import squeezetime

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    model = squeezetime.load_checkpoint(args.checkpoint) if args.checkpoint else squeezetime.demo_model()
    stack: list = []
    report = {"model": f"depth {model.config.get('depth')} width x{model.config.get('widen_factor')} "
                       f"({'demo' if not args.checkpoint else os.path.basename(args.checkpoint)})",
              "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, torch "
                         f"{torch.__version__}, {torch.get_num_threads()} threads",
              "requests_per_level": args.requests, "concurrency": list(CONCURRENCY), "results": {}, "notes": []}
    with tempfile.TemporaryDirectory(prefix="bench-ts-") as tmp:
        work = Path(tmp)
        payloads = make_payloads(work)
        targets = {"in-process": in_process_senders(model)}
        try:
            targets["torchserve"] = torchserve_target(work, args.checkpoint, stack)
            if not args.no_triton:
                triton, why = triton_target(work, args.checkpoint, stack)
                if triton is not None:
                    targets["triton"] = triton
                else:
                    report["notes"].append(why)
            total = len(targets) * len(KINDS) * len(CONCURRENCY) * args.requests
            with tqdm(total=total, desc="bench", unit="req", file=sys.stderr) as progress:
                for target, senders in targets.items():
                    rows = []
                    for kind in KINDS:
                        senders[kind](payloads[kind])  # warm-up (first decode, first batch)
                        for c in CONCURRENCY:
                            row = run_level(senders[kind], payloads[kind], c, args.requests, progress)
                            rows.append({"kind": kind, **row})
                    report["results"][target] = rows
        finally:
            for stop in reversed(stack):
                try:
                    stop()
                except Exception as e:  # noqa: BLE001
                    print(f"warning: stopping a server failed: {e}", file=sys.stderr)
    (out / "bench_torchserve.json").write_text(json.dumps(report, indent=1))
    plot(report, out / "bench_torchserve.png")
    print(json.dumps(report, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
