"""``squeezetime bench-serve``: Triton-served vs in-process throughput and latency (JSON + PNG), measured by
``squeezetime.bench.serving.run_serve_benchmark``."""
from __future__ import annotations

import argparse
import json


def register(sub) -> None:
    p = sub.add_parser("bench-serve", help="clips/s and p50/p95/p99 latency over gRPC vs in-process (Triton)")
    src = p.add_mutually_exclusive_group()
    src.add_argument("--checkpoint", metavar="PATH", help="checkpoint to serve")
    src.add_argument("--demo", action="store_true", help="the demo model (default)")
    src.add_argument("--arch", default=None, help="a named configuration with random weights, e.g. k400")
    p.add_argument("--width", type=float, default=None, help="widen_factor for --arch (default: the config's)")
    p.add_argument("--dtype", choices=["float32", "bfloat16", "float16"], default="float32")
    p.add_argument("--concurrency", default="1,4,8,16", help="comma-separated client counts (default 1,4,8,16)")
    p.add_argument("--requests", type=int, default=48, help="CLIP requests per concurrency level")
    p.add_argument("--video-requests", type=int, default=32, help="video requests per concurrency level")
    p.add_argument("--views", choices=["1x1", "10x3"], default="1x1")
    p.add_argument("--max-batch-size", type=int, default=8)
    p.add_argument("--in-process-seconds", type=float, default=10.0)
    p.add_argument("--shared-memory", action="store_true", help="send CLIP through system shared memory")
    p.add_argument("--out", default="build/bench_serve", help="directory for bench_serve.json/.png")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import squeezetime
    from ..bench.serving import run_serve_benchmark

    if args.checkpoint:
        model, name = squeezetime.load_checkpoint(args.checkpoint), args.checkpoint
    elif args.arch:
        kwargs = {"widen_factor": args.width} if args.width else {}
        model = squeezetime.create_model(args.arch, **kwargs).eval()
        name = f"{args.arch} (random weights{', width x%g' % args.width if args.width else ''})"
    else:
        model, name = squeezetime.demo_model(), "demo (SqueezeTime-50 x1/4, 8 classes)"
    report = run_serve_benchmark(model, out=args.out, concurrencies=[int(c) for c in args.concurrency.split(",")],
                                 requests_per_level=args.requests, video_requests_per_level=args.video_requests,
                                 views=args.views, dtype=args.dtype, max_batch_size=args.max_batch_size,
                                 in_process_seconds=args.in_process_seconds, shared_memory=args.shared_memory,
                                 model_name=name)
    print(json.dumps(report, indent=2))
    return 0
