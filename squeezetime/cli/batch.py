"""``squeezetime batch INPUT --out results.jsonl``: a whole corpus, resumable, locally or on a Ray cluster."""
from __future__ import annotations

import argparse
import os
import sys

from .common import EXIT_OK, EXIT_SOME_FAILED, EXIT_USAGE, add_model_options, load_classifier, positive_int

EXIT_INTERRUPTED = 130  # the shell's code for Ctrl-C; the file is valid and a rerun resumes


def register(sub) -> None:
    p = sub.add_parser("batch", help="classify a directory or list of videos into a resumable JSON-lines file",
                       description="One JSON line per video in --out: {\"path\", \"top\": [[label, p], ...]} or "
                                   "{\"path\", \"error\"}. A rerun skips the paths already in --out. Exit status: "
                                   "0 all classified, 1 some videos failed, 2 usage, 130 interrupted.")
    p.add_argument("input", metavar="INPUT_DIR_OR_LIST",
                   help="a directory (searched recursively for video files), a text file with one path per "
                        "line, or one video")
    p.add_argument("--out", required=True, metavar="RESULTS.jsonl", help="results file, appended to (resume)")
    add_model_options(p)
    p.add_argument("--views", choices=["1x1", "10x3"], default="1x1",
                   help="1x1: centre crop of one clip (official val); 10x3: 10 clips x 3 crops (official test)")
    p.add_argument("--topk", type=positive_int, default=5)
    p.add_argument("--workers", type=positive_int, default=None,
                   help="decoding processes (default: CPUs - 1, at least 1); with --ray: at most this many decode "
                        "tasks at once (default: as many as the cluster's CPUs allow)")
    p.add_argument("--batch-size", type=positive_int, default=8, help="clips per network call (default 8)")
    p.add_argument("--ray", nargs="?", const="local", default=None, metavar="ADDRESS",
                   help="run as a Ray Data job on the cluster at ADDRESS (host:port or ray://host:port), or on a "
                        "local Ray instance when no ADDRESS is given (write --ray=ADDRESS, or put --ray after "
                        "INPUT). Needs the [ray] extra")
    p.add_argument("--actors", type=positive_int, default=None,
                   help="with --ray: classifier actors (default: one per GPU of the cluster, else 1)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..batch import ResultsFile, Summary, find_videos

    if args.ray is not None and not ray_available():
        print("error: --ray needs Ray Data: pip install 'squeezetime[ray]'", file=sys.stderr)
        return EXIT_USAGE
    paths = find_videos(args.input)
    with ResultsFile(args.out) as out:
        todo = [p for p in paths if p not in out.done]
        earlier = [out.done[p] for p in paths if p in out.done]
        summary = _run(args, todo, out) if todo else Summary()
    summary.skipped = len(earlier)
    summary.skipped_failed = sum("error" in r for r in earlier)
    report_errors(paths, out.done, set(todo))
    print(f"batch: {summary} -> {args.out}", file=sys.stderr)
    if summary.interrupted:
        return EXIT_INTERRUPTED
    return EXIT_SOME_FAILED if summary.any_failed else EXIT_OK


def report_errors(paths: list[str], done: dict[str, dict], this_run: set[str]) -> None:
    """One ``error: PATH: reason`` line per failed video, as every subcommand does (after the progress bar)."""
    for path in paths:
        record = done.get(path)
        if record is not None and "error" in record:
            print(f"error: {record['error']}" + ("" if path in this_run else " (from an earlier run)"),
                  file=sys.stderr)


def _run(args: argparse.Namespace, todo: list[str], out):
    progress = not args.no_progress
    if args.ray is not None:
        from ..batch.ray_job import run_ray

        return run_ray(_spec(args), todo, out, address=None if args.ray == "local" else args.ray, views=args.views,
                       topk=args.topk, actors=args.actors, decoders=args.workers, progress=progress)
    from ..batch import run_local

    classifier = load_classifier(args)
    classifier.batch_size = args.batch_size
    workers = args.workers or max(1, (os.cpu_count() or 2) - 1)
    return run_local(classifier, todo, out, views=args.views, topk=args.topk, workers=workers, progress=progress)


def _spec(args: argparse.Namespace):
    from ..batch import ModelSpec

    source = os.path.abspath(args.checkpoint) if args.checkpoint else "demo"  # actors run in other directories
    return ModelSpec(source, arch=args.arch, backend=args.backend, dtype=args.dtype, device=args.device,
                     threads=args.threads, batch_size=args.batch_size)


def ray_available() -> bool:
    import importlib.util

    return importlib.util.find_spec("ray") is not None and importlib.util.find_spec("ray.data") is not None
