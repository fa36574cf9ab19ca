"""``squeezetime timeline VIDEO``: what happens when in a video, one window every ``--stride`` seconds.

    squeezetime timeline match.mp4 --demo --stride 1 --topk 3            # one line per window, then the segments
    squeezetime timeline match.mp4 --checkpoint k400.pth --json          # {"video", "windows", "segments"}
    squeezetime timeline match.mp4 --demo --csv --plot match.png         # windows as CSV rows, a picture
"""
from __future__ import annotations

import argparse
import csv
import json
import sys

from .common import EXIT_OK, EXIT_SOME_FAILED, EXIT_USAGE, add_model_options, error_text, load_classifier, \
    positive_int


def positive_seconds(text: str) -> float:
    """argparse type: a finite number of seconds > 0."""
    import math

    try:
        value = float(text)
    except ValueError:
        value = 0.0
    if not math.isfinite(value) or value <= 0:
        raise argparse.ArgumentTypeError(f"must be a number of seconds > 0, got {text!a}")
    return value


def register(sub) -> None:
    p = sub.add_parser("timeline", help="labels over time: one window every --stride seconds, merged segments")
    p.add_argument("video", metavar="VIDEO")
    add_model_options(p)
    p.add_argument("--stride", type=positive_seconds, default=1.0, help="seconds between windows (default 1)")
    p.add_argument("--topk", type=positive_int, default=5, help="labels per window (default 5)")
    p.add_argument("--batch-size", type=positive_int, default=8, help="most windows per network call (default 8)")
    fmt = p.add_mutually_exclusive_group()
    fmt.add_argument("--json", action="store_true", help='one JSON object: {"video", "windows", "segments"}')
    fmt.add_argument("--csv", action="store_true", help="one CSV row per window: start, end, label_1, prob_1, ...")
    p.add_argument("--plot", metavar="OUT.png", default=None, help="draw the labels over time with their confidence")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..errors import SqueezeTimeError

    try:
        classifier = load_classifier(args)
    except SqueezeTimeError as e:
        print(f"error: {e}", file=sys.stderr)
        return EXIT_USAGE
    return show_timeline(args, lambda: classifier.timeline(args.video, stride=args.stride, topk=args.topk,
                                                           batch_size=args.batch_size))


def show_timeline(args: argparse.Namespace, windows, fatal: tuple = ()) -> int:
    """Run ``windows()`` (an iterable of ``Window``) and print it as ``args`` asks (text lines as windows come,
    ``--json``, ``--csv``; ``--plot``). Returns the exit status (``fatal`` errors: 2, others: 1)."""
    from tqdm import tqdm

    from ..errors import SqueezeTimeError
    from ..timeline import segments, timeline_dict

    done = []
    writer = csv.writer(sys.stdout) if args.csv else None
    if writer is not None:
        writer.writerow(["start", "end"] + [f"{c}_{i}" for i in range(1, args.topk + 1) for c in ("label", "prob")])
    try:
        with tqdm(desc="timeline", unit="window", file=sys.stderr, disable=None) as bar:
            for window in windows():
                done.append(window)
                bar.update()
                if writer is not None:
                    writer.writerow([f"{window.start:.3f}", f"{window.end:.3f}"]
                                    + [v for label, p in window.top for v in (label, f"{p:.6f}")])
                elif not args.json:
                    print(f"{window.start:8.2f} {window.end:8.2f}  "
                          + ", ".join(f"{label} ({p:.3f})" for label, p in window.top), flush=True)
    except fatal as e:
        print(f"error: {e}", file=sys.stderr)
        return EXIT_USAGE
    except SqueezeTimeError as e:
        print(f"error: {error_text(args.video, e)}", file=sys.stderr)
        return EXIT_SOME_FAILED
    if args.json:
        print(json.dumps(timeline_dict(args.video, done)))
    elif not args.csv:
        print("segments:")
        for s in segments(done):
            print(f"{s['start']:8.2f} {s['end']:8.2f}  {s['label']} ({s['score']:.3f})")
    if args.plot:
        plot_timeline(done, args.plot, title=args.video)
        print(f"wrote {args.plot}", file=sys.stderr)
    return EXIT_OK


def plot_timeline(windows, out: str, title: str = "") -> None:
    """Labels over time: top, each window's top-1 as a bar on its label's row (darker = more confident) with
    the merged segments outlined; bottom, the top-1 probability of each window over time."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from ..timeline import segments

    labels = sorted({w.top[0][0] for w in windows})
    row = {label: i for i, label in enumerate(labels)}
    fig, (top, bottom) = plt.subplots(2, 1, sharex=True, figsize=(10, 2 + 0.4 * len(labels)),
                                      gridspec_kw={"height_ratios": [max(2, len(labels)), 2]})
    cmap = plt.get_cmap("viridis")
    for w in windows:
        label, p = w.top[0]
        step = (windows[1].centre - windows[0].centre) if len(windows) > 1 else w.end - w.start
        top.barh(row[label], step, left=w.centre - step / 2, height=0.6, color=cmap(p), edgecolor="none")
    for s in segments(windows):
        top.barh(row[s["label"]], s["end"] - s["start"], left=s["start"], height=0.8, fill=False,
                 edgecolor="black", linewidth=0.8)
    top.set_yticks(range(len(labels)), labels)
    top.set_title(f"timeline of {title}" if title else "timeline")
    fig.colorbar(plt.cm.ScalarMappable(norm=matplotlib.colors.Normalize(0, 1), cmap=cmap), ax=[top, bottom],
                 label="top-1 probability")
    bottom.plot([w.centre for w in windows], [w.top[0][1] for w in windows], marker=".", linewidth=1)
    bottom.set_ylim(0, 1.02)
    bottom.set_ylabel("top-1 p")
    bottom.set_xlabel("seconds")
    fig.savefig(out, dpi=100)
    plt.close(fig)


__all__ = ["plot_timeline", "positive_seconds", "register", "show_timeline"]
