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


def classify_videos(videos: list[str], classify, as_json: bool, fatal: tuple = (), progress: bool = False) -> int:
    """Print one prediction line per video, or one ``error: VIDEO: reason`` line for a video that fails.

    Returns the exit status: 0 all classified, 1 some failed, 2 a ``fatal`` error stopped the run
    (e.g. the server went away).
    """
    import sys

    from tqdm import tqdm

    from ..errors import SqueezeTimeError

    failures = 0
    for path in tqdm(videos, desc="classify", unit="video", disable=not progress or len(videos) < 2,
                     file=sys.stderr):
        try:
            top = classify(path)
        except fatal as e:
            print(f"error: {e}", file=sys.stderr)
            return 2
        except SqueezeTimeError as e:
            failures += 1
            print(f"error: {path}: {e}", file=sys.stderr)
            continue
        print_prediction(path, top, as_json)
    return 1 if failures else 0


def print_prediction(video: str, top: list[tuple[str, float]], as_json: bool) -> None:
    """One line per video: ``VIDEO: label (p), ...`` or a JSON object."""
    import json

    if as_json:
        print(json.dumps({"video": video, "labels": [{"label": l, "probability": p} for l, p in top]}))
    else:
        print(f"{video}: " + ", ".join(f"{label} ({prob:.3f})" for label, prob in top))
