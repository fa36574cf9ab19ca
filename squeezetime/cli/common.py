"""Options and output shared by subcommands.

Exit status, the same for every subcommand: 0 all done; 1 some inputs failed (each named on stderr as
``error: INPUT: reason``); 2 usage or setup error (bad arguments, unreadable checkpoint, server unreachable).
"""
from __future__ import annotations

import argparse

EXIT_OK, EXIT_SOME_FAILED, EXIT_USAGE = 0, 1, 2


def add_model_options(parser: argparse.ArgumentParser, required: bool = True, backend: bool = True) -> None:
    group = parser.add_mutually_exclusive_group(required=required)
    group.add_argument("--checkpoint", metavar="PATH", help="official or squeezetime checkpoint (.pth)")
    group.add_argument("--demo", action="store_true", help="the embedded demo model (synthetic motions)")
    parser.add_argument("--arch", default=None, help="named configuration: k400, k600, hmdb51, ava "
                        "(default: inferred from the checkpoint)")
    if backend:
        from ..backends import DTYPES, available_backends

        parser.add_argument("--backend", choices=available_backends(), default="auto",
                            help="auto (default: the first that builds of an order measured per device, "
                                 "docs/engines.md), eager, optimized, onnxruntime, openvino, int8")
        parser.add_argument("--dtype", choices=sorted(DTYPES), default="float32", help="compute precision")
        parser.add_argument("--device", default=None, help="cpu (default) or cuda[:N]")
        parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")


def positive_int(text: str) -> int:
    """argparse type: an integer >= 1 (a bad value is a usage error, exit status 2)."""
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be an integer >= 1, got {text!a}")
    return value


def device_ids(text: str) -> tuple[int, ...]:
    """``--gpus 0,1`` -> (0, 1)."""
    try:
        ids = tuple(int(part) for part in text.split(",") if part.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected GPU ids like 0,1, got {text!r}") from None
    if not ids or min(ids) < 0:
        raise argparse.ArgumentTypeError(f"expected GPU ids >= 0 like 0,1, got {text!r}")
    return ids


def load_model(args: argparse.Namespace):
    """The ``SqueezeTime`` network the model options name (for commands that transform it, e.g. export)."""
    import squeezetime

    if getattr(args, "checkpoint", None):
        return squeezetime.load_checkpoint(args.checkpoint, arch=args.arch)
    return squeezetime.demo_model()


def load_classifier(args: argparse.Namespace):
    """The ``Classifier`` the model options name (``--checkpoint``, an int8 artifact included, or ``--demo``)."""
    import squeezetime
    from ..backends.int8 import is_int8_artifact

    checkpoint = getattr(args, "checkpoint", None)
    source = checkpoint if checkpoint and is_int8_artifact(checkpoint) else load_model(args)
    return squeezetime.load(source, backend=getattr(args, "backend", "auto"),
                            dtype=getattr(args, "dtype", None), device=getattr(args, "device", None),
                            threads=getattr(args, "threads", None))


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
            return EXIT_USAGE
        except SqueezeTimeError as e:
            failures += 1
            print(f"error: {error_text(path, e)}", file=sys.stderr)
            continue
        print_prediction(path, top, as_json)
    return EXIT_SOME_FAILED if failures else EXIT_OK


def error_text(path: str, error: Exception) -> str:
    """``PATH: reason``, naming the path once even when the reason already starts with it."""
    text = str(error)
    return text if text.startswith(f"{path}:") else f"{path}: {text}"


def print_prediction(video: str, top: list[tuple[str, float]], as_json: bool) -> None:
    """One line per video: ``VIDEO: label (p), ...`` or a JSON object."""
    import json

    if as_json:
        print(json.dumps({"video": video, "labels": [{"label": l, "probability": p} for l, p in top]}))
    else:
        print(f"{video}: " + ", ".join(f"{label} ({prob:.3f})" for label, prob in top))
