"""``squeezetime bench-video``: what getting clips out of a video costs, before and after issue 13
(``squeezetime.bench.video``). Writes DIR/bench_video.json and DIR/bench_video.png and prints the JSON.
"""
from __future__ import annotations

import argparse
import json
import os
import sys

from ..bench.video import GOPS, QUICK, SIZES, VIEWS


def register(sub) -> None:
    p = sub.add_parser("bench-video", help="benchmark video decoding + clip sampling (before/after issue 13)")
    p.add_argument("--out", default="build/bench_video", help="output directory (JSON, PNG)")
    p.add_argument("--videos", default=None, help="where generated videos are kept (default: OUT/videos)")
    p.add_argument("--quick", action="store_true", help="a subset: " + ", ".join(f"{s}s {r} {g}" for s, r, g in QUICK))
    p.add_argument("--only", action="append", default=None, metavar="SECONDSxSIZExGOP",
                   help="just these videos, e.g. 180x640x360xgop2s (repeatable)")
    p.add_argument("--views", choices=VIEWS, action="append", default=None, help="default: both")
    p.add_argument("--repeats", type=int, default=3, help="interleaved timings per method (median reported)")
    p.add_argument("--no-memory", action="store_true", help="skip the peak-RSS subprocesses")
    p.add_argument("--no-network", action="store_true", help="skip timing the network")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..bench.video import run_video_bench, video_cases, write_report
    from .common import EXIT_OK, EXIT_USAGE

    try:
        cases = video_cases(args.only, args.quick)
    except (ValueError, StopIteration):
        print(f"error: --only takes SECONDSxWIDTHxHEIGHTxGOP, e.g. 180x640x360xgop2s; sizes {list(SIZES.values())}, "
              f"GOPs {list(GOPS)}", file=sys.stderr)
        return EXIT_USAGE
    results = run_video_bench(cases, args.views or list(VIEWS), args.videos or os.path.join(args.out, "videos"),
                              repeats=args.repeats, memory=not args.no_memory, network=not args.no_network,
                              command="squeezetime bench-video " + " ".join(sys.argv[2:]))
    json_path, png_path = write_report(results, args.out)
    print(json.dumps(results, indent=2))
    print(f"wrote {json_path} and {png_path}", file=sys.stderr)
    return EXIT_OK
