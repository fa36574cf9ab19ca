"""Options shared by subcommands: which model to load."""
from __future__ import annotations

import argparse


def add_model_options(parser: argparse.ArgumentParser, required: bool = False) -> None:
    group = parser.add_mutually_exclusive_group(required=required)
    group.add_argument("--checkpoint", metavar="PATH", help="official or squeezetime checkpoint (.pth)")
    group.add_argument("--demo", action="store_true", help="the embedded demo model (synthetic motions)")
    parser.add_argument("--arch", default=None, help="named configuration: k400, k600, hmdb51, ava "
                        "(default: inferred from the checkpoint)")


def load_model(args: argparse.Namespace):
    import squeezetime

    if getattr(args, "checkpoint", None):
        return squeezetime.load_checkpoint(args.checkpoint, arch=args.arch)
    return squeezetime.demo_model()  # --demo, or nothing given


def print_prediction(video: str, top: list[tuple[str, float]], as_json: bool) -> None:
    """One line per video: ``VIDEO: label (p), ...`` or a JSON object."""
    import json

    if as_json:
        print(json.dumps({"video": video, "labels": [{"label": l, "probability": p} for l, p in top]}))
    else:
        print(f"{video}: " + ", ".join(f"{label} ({prob:.3f})" for label, prob in top))
