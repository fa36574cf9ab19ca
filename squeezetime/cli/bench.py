"""``squeezetime bench``: latency of the full network per inference path (``squeezetime.bench.network``), or
with ``--peers`` against the engines a user could pick instead (``squeezetime.bench.peers``). Writes
DIR/bench.json and DIR/bench.png (DIR/peers.json and DIR/peers.png) and prints the JSON.
"""
from __future__ import annotations

import argparse
import json
import sys

from ..bench import network, peers
from ..bench.network import ALL_PATHS, CPU_PATHS, CUDA_PATHS, NetworkBench


def register(sub) -> None:
    p = sub.add_parser("bench", help="benchmark inference paths (eager, torch.compile, optimised fp32/bf16/fp16)")
    p.add_argument("--arch", default="k400", help="named configuration (random weights; default k400)")
    p.add_argument("--widen-factor", type=float, default=1.0)
    p.add_argument("--size", type=int, default=224, help="frame height and width")
    p.add_argument("--batch-sizes", type=int, nargs="+", default=None, help="default 1 (--peers: 1 8)")
    p.add_argument("--rounds", type=int, default=5, help="timed rounds per path and batch size")
    p.add_argument("--warmup", type=int, default=2, help="untimed calls per path first")
    p.add_argument("--paths", nargs="+", default=None, choices=ALL_PATHS,
                   help=f"default: {' '.join(CPU_PATHS)} (CPU) / {' '.join(CUDA_PATHS)} (CUDA)")
    p.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    p.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (default: torch's)")
    p.add_argument("--no-micro", action="store_true", help="skip the operator micro-benchmarks")
    p.add_argument("--out", default="bench-results", metavar="DIR")
    p.add_argument("--peers", action="store_true",
                   help="instead: our backends against torch.compile, ONNX Runtime and OpenVINO on uint8 clips "
                        f"(rows: {', '.join(name for name, _ in peers.PEERS)}); --batch-sizes default 1 8")
    p.add_argument("--rows", nargs="+", default=None, metavar="ROW", help="with --peers: only these rows (eager first)")
    p.add_argument("--settle", type=float, default=0.2, metavar="S",
                   help="with --peers: pause before each timed call (default 0.2 s). ONNX Runtime's threads spin "
                        "for tens of ms after a run and took the cores from the next row: measured here, ours "
                        "optimized 105 ms alone, 154 ms right after an ONNX Runtime call, 111 ms 0.1 s after")
    p.set_defaults(func=run)


def settings(args: argparse.Namespace, default_batch_sizes: tuple[int, ...]) -> NetworkBench:
    return NetworkBench(arch=args.arch, widen_factor=args.widen_factor, size=args.size,
                        batch_sizes=tuple(args.batch_sizes or default_batch_sizes), rounds=args.rounds,
                        warmup=args.warmup, threads=args.threads)


def run_peers(args: argparse.Namespace) -> int:
    results = peers.run_peers(settings(args, (1, 8)), rows=args.rows, settle=args.settle,
                              command="squeezetime " + " ".join(sys.argv[1:]))
    json_path, png_path = network.write_report(results, args.out, "peers", peers.plotted_peers(results))
    print(json.dumps(results, indent=2))
    print(f"wrote {json_path} and {png_path}", file=sys.stderr)
    return 0 if not results["failed"] else 1


def run(args: argparse.Namespace) -> int:
    import torch

    if args.peers:
        return run_peers(args)
    if args.device == "cuda" and not torch.cuda.is_available():
        print("error: --device cuda but no CUDA GPU", file=sys.stderr)
        return 2
    paths = args.paths or (CPU_PATHS if args.device == "cpu" else CUDA_PATHS)
    results = network.run_paths(settings(args, (1,)), paths, device=args.device, micro=not args.no_micro)
    json_path, png_path = network.write_report(results, args.out, "bench", results if "eager" in paths else None)
    print(json.dumps(results, indent=2))
    print(f"wrote {json_path} and {png_path}", file=sys.stderr)
    return 0
