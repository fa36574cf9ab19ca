"""``squeezetime predict VIDEO...``: labels for each video, one failure line per bad video."""
from __future__ import annotations

import argparse
import sys

from .common import add_model_options, load_model, print_prediction


def register(sub) -> None:
    p = sub.add_parser("predict", help="classify video files")
    p.add_argument("videos", nargs="+", metavar="VIDEO")
    add_model_options(p)
    p.add_argument("--views", choices=["1x1", "10x3"], default="1x1",
                   help="1x1: centre crop of one clip (official val); 10x3: 10 clips x 3 crops (official test)")
    p.add_argument("--topk", type=int, default=5)
    p.add_argument("--json", action="store_true", help="one JSON object per video on stdout")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    import squeezetime

    model = load_model(args)
    failures = 0
    for path in tqdm(args.videos, desc="predict", unit="video", disable=len(args.videos) < 2, file=sys.stderr):
        try:
            top = squeezetime.predict(model, path, views=args.views, topk=args.topk)
        except squeezetime.SqueezeTimeError as e:
            failures += 1
            print(f"error: {path}: {e}", file=sys.stderr)
            continue
        print_prediction(path, top, args.json)
    return 1 if failures else 0
