"""``squeezetime demo``: generate the demo videos and classify them with the embedded demo model."""
from __future__ import annotations

import argparse
import os
import sys


def register(sub) -> None:
    p = sub.add_parser("demo", help="classify generated demo videos with the embedded demo model")
    p.add_argument("--out", default="build/demo_videos", help="where the demo videos are written")
    p.add_argument("--per-class", type=int, default=2, help="videos per class (8 classes)")
    p.add_argument("--via", choices=["inprocess", "triton"], default=None,
                   help="classify in this process, or over gRPC through a real tritonserver "
                        "(default: triton when the serving extra is installed)")
    p.set_defaults(func=run)


def write_demo_videos(out: str, per_class: int = 2) -> list[tuple[str, str]]:
    """Deterministic demo videos (seeds disjoint from training): [(path, true label)], all classes, 4 formats."""
    from ..synthetic import CLASSES, make_video

    os.makedirs(out, exist_ok=True)
    videos = []
    for k in range(per_class):
        for label, name in enumerate(CLASSES):
            container = ("mp4", "avi", "webm", "mkv")[(label + k) % 4]
            path = os.path.join(out, f"{name.replace(' ', '_')}_{k}.{container}")
            if not os.path.exists(path):
                with open(path, "wb") as f:
                    f.write(make_video(label, seed=900_000 + 97 * label + k, container=container))
            videos.append((path, name))
    return videos


def report(results: list[tuple[str, str, str, float]]) -> int:
    """Print one line per video and the final ``demo: N/M`` line; exit status 0 only when all are right."""
    correct = 0
    for path, truth, label, prob in results:
        ok = label == truth
        correct += ok
        print(f"{'ok ' if ok else 'BAD'} {os.path.basename(path):32s} -> {label} ({prob:.3f})  [truth: {truth}]")
    print(f"demo: {correct}/{len(results)} videos classified correctly")
    return 0 if correct == len(results) else 1


def run(args: argparse.Namespace) -> int:
    from ..serving.triton.demo import classify_via_triton, serving_available

    if args.via == "triton" or (args.via is None and serving_available()):
        videos = write_demo_videos(args.out, args.per_class)
        return report(classify_via_triton(videos, progress=lambda line: print(line, file=sys.stderr, flush=True)))
    from tqdm import tqdm

    import squeezetime

    classifier = squeezetime.load(squeezetime.DEMO)
    videos = write_demo_videos(args.out, args.per_class)
    results = []
    for path, truth in tqdm(videos, desc="demo", unit="video", file=sys.stderr):
        label, prob = classifier.classify(path, topk=1)[0]
        results.append((path, truth, label, prob))
    return report(results)
