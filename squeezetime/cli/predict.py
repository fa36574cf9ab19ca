"""``squeezetime predict VIDEO...``: labels for each video, one failure line per bad video."""
from __future__ import annotations

import argparse

from .common import add_model_options, classify_videos, load_classifier, positive_int


def register(sub) -> None:
    p = sub.add_parser("predict", help="classify video files")
    p.add_argument("videos", nargs="+", metavar="VIDEO")
    add_model_options(p)
    p.add_argument("--views", choices=["1x1", "10x3"], default="1x1",
                   help="1x1: centre crop of one clip (official val); 10x3: 10 clips x 3 crops (official test)")
    p.add_argument("--topk", type=positive_int, default=5)
    p.add_argument("--json", action="store_true", help="one JSON object per video on stdout")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    classifier = load_classifier(args)
    return classify_videos(args.videos, lambda path: classifier.classify(path, views=args.views, topk=args.topk),
                           args.json, progress=True)
