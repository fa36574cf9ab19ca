"""``squeezetime bench-perf``: Triton's perf_analyzer against our Triton models and TorchServe, vs in-process
(``squeezetime.bench.serving.run_perf_benchmark``)."""
from __future__ import annotations

import argparse
import json

from .common import EXIT_OK, EXIT_USAGE


def register(sub) -> None:
    p = sub.add_parser("bench-perf", help="perf_analyzer vs in-process: Triton clip and video models, TorchServe",
                       description="Serve the model with Triton (and TorchServe), load it with perf_analyzer at each "
                                   "concurrency, compare with in-process clips/s measured right before each level. "
                                   "Writes bench_perf.json and bench_perf.png.")
    src = p.add_mutually_exclusive_group()
    src.add_argument("--checkpoint", metavar="PATH", help="checkpoint to serve")
    src.add_argument("--demo", action="store_true", help="the demo model (default)")
    p.add_argument("--concurrency", default="1,2,4,8,16", help="comma-separated levels (default 1,2,4,8,16)")
    p.add_argument("--max-batch-size", type=int, default=8, help="Triton's dynamic batch (and TorchServe's batch)")
    p.add_argument("--dtype", choices=["float32", "bfloat16"], default="float32")
    p.add_argument("--backend", default="optimized", help="backend of the servers and the in-process reference alike "
                   "(default optimized; auto may pick differently in the servers' environments)")
    p.add_argument("--requests-per-window", type=int, default=40, help="perf_analyzer count window")
    p.add_argument("--in-process-seconds", type=float, default=4.0)
    p.add_argument("--no-torchserve", action="store_true")
    p.add_argument("--no-video", action="store_true")
    p.add_argument("--out", default="build/bench_perf", help="directory for bench_perf.json/.png")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import squeezetime
    from ..bench.serving import run_perf_benchmark

    try:
        levels = [int(c) for c in args.concurrency.split(",")]
    except ValueError:
        levels = []
    if not levels or min(levels) < 1:
        print(f"error: --concurrency must be positive integers, got {args.concurrency!a}")
        return EXIT_USAGE
    model = squeezetime.load_checkpoint(args.checkpoint) if args.checkpoint else squeezetime.demo_model()
    report = run_perf_benchmark(model, out=args.out, concurrencies=levels, max_batch_size=args.max_batch_size,
                                dtype=args.dtype, in_process_seconds=args.in_process_seconds,
                                requests_per_window=args.requests_per_window, torchserve=not args.no_torchserve,
                                torchserve_batch_size=args.max_batch_size, video=not args.no_video,
                                checkpoint=args.checkpoint, model_name=args.checkpoint or "demo",
                                backend=args.backend)
    print(json.dumps(report, indent=2))
    return EXIT_OK
