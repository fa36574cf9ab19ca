"""``squeezetime quantize``: int8 post-training static quantisation on the user's videos, with an accuracy gate."""
from __future__ import annotations

import argparse
import json
import sys

from .common import EXIT_OK, EXIT_SOME_FAILED, EXIT_USAGE, add_model_options, load_model, positive_int


def agreement(text: str) -> float:
    """argparse type: a fraction >= 0 (above 1 can never pass: a dry run that only reports the figures)."""
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not value >= 0.0:
        raise argparse.ArgumentTypeError(f"must be a fraction >= 0 (0.99 = 99 %), got {text!a}")
    return value


def register(sub) -> None:
    p = sub.add_parser("quantize", help="int8 quantisation (OpenVINO/NNCF) calibrated on your videos, with a gate",
                       description="Calibrate an int8 network on the clips of your videos, check its top-1 "
                       "agreement with float32 on held-out videos, and write one file that squeezetime.load, "
                       "`triton-repo --checkpoint` and `archive --checkpoint` take. Exit status 1 when the "
                       "agreement is below --min-agreement (nothing written unless --force).")
    add_model_options(p, backend=False)
    p.add_argument("--calibration", required=True, metavar="DIR",
                   help="folder of videos (searched recursively); labels are read from DIR/<class>/ folders or "
                        "<class>_<n> file names when they name a class")
    p.add_argument("--out", required=True, metavar="FILE", help="the int8 artifact to write (e.g. model.int8.zip)")
    p.add_argument("--views", default=None, help="views per video (1x1, 10x3; default: the model's)")
    p.add_argument("--holdout", type=positive_int, default=None, metavar="N",
                   help="videos held out of calibration for the gate (default: a fifth, at least one)")
    p.add_argument("--min-agreement", type=agreement, default=0.99,
                   help="least top-1 agreement with float32 on the held-out clips (default 0.99; above 1: "
                        "never passes, a dry run that reports the figures)")
    p.add_argument("--force", action="store_true", help="write the artifact even below --min-agreement")
    p.add_argument("--engine", choices=["openvino"], default="openvino",
                   help="quantiser: openvino (NNCF); see docs/quantize.md for why not PT2E")
    p.add_argument("--threads", type=positive_int, default=None, help="torch / OpenVINO threads")
    p.add_argument("--json", action="store_true", help="print the report as one JSON object")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import os

    import torch

    from ..errors import SqueezeTimeError
    from ..quantize import GateError, quantize

    if args.threads:
        torch.set_num_threads(args.threads)
    if os.path.isdir(args.out):
        print(f"error: --out {args.out} is a directory; name the file to write", file=sys.stderr)
        return EXIT_USAGE
    try:
        model = load_model(args)
        report = quantize(model, args.calibration, args.out, views=args.views, holdout=args.holdout,
                          min_agreement=args.min_agreement, force=args.force, checkpoint=args.checkpoint)
        status = EXIT_SOME_FAILED if report.failed_videos else EXIT_OK
    except GateError as e:
        report, status, message = e.report, EXIT_SOME_FAILED, f"error: {e}"
    except (SqueezeTimeError, OSError) as e:
        print(f"error: {e}", file=sys.stderr)
        return EXIT_USAGE
    for failure in report.failed_videos:
        print(f"error: {failure}", file=sys.stderr)
    if args.json:
        print(json.dumps({**report.__dict__, "passed": report.passed}))
    else:
        print("\n".join(report.lines()))
        if report.written:
            note = " (forced: below the gate)" if not report.passed else ""
            print(f"wrote {report.written}{note}")
    if report.written is None:
        print(message, file=sys.stderr)
    return status
