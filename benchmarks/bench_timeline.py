"""Timeline of a long generated video: wall time against (windows x network time per clip) + one sequential decode.

    .venv/bin/python benchmarks/bench_timeline.py --seconds 180 --out build/bench_timeline

Generates an H.264 640x360 video (demo motions along a square path, looped) once, then measures, interleaved in
one process for ``--rounds`` rounds:
- decode: one pass of ``squeezetime.video.stream.window_clips`` (the timeline's own decode: every frame decoded,
  the frames windows need converted, resized and cropped), nothing else;
- network: ``Classifier.scores`` per clip, on batches of 1 and of ``--batch-size`` real window clips;
- timeline: ``list(Classifier.timeline(video, stride))``, the whole thing.
The target (issue 13): timeline <= 1.2 x (windows x network per clip + decode). Prints JSON, draws a PNG.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import statistics
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import squeezetime  # noqa: E402
from squeezetime.synthetic import random_motion, render  # noqa: E402
from squeezetime.synthetic.generator import pose_at  # noqa: E402
from squeezetime.video.stream import window_clips  # noqa: E402

FPS = 25


def path_frames(height: int, width: int, seconds_each: float = 4.0, seed: int = 4) -> np.ndarray:
    """Left, down, right, up, zoom in: one object, no cuts (as tests/test_timeline.py)."""
    rng = np.random.default_rng(seed)
    first = random_motion(0, rng)
    pose = (0.5 + first.speed / 2, 0.5 - first.speed / 2, first.angle, first.size)
    n = int(seconds_each * FPS)
    out = []
    for label in (0, 3, 1, 2, 6):
        speed = first.speed if label < 4 else random_motion(label, rng).speed
        motion = dataclasses.replace(first, label=label, speed=speed, center=pose[:2], angle=pose[2], size=pose[3])
        out.append(render(motion, np.arange(n) / n, height, width))
        pose = pose_at(motion, 1.0)
    return np.concatenate(out)


def make_video(path: Path, seconds: float, height: int, width: int) -> None:
    """``seconds`` of the motion loop, H.264 (x264 veryfast, crf 18, GOP 250), encoded frame by frame."""
    import av

    loop = path_frames(height, width)
    total = int(seconds * FPS)
    with av.open(str(path), "w") as out:
        stream = out.add_stream("libx264", rate=FPS)
        stream.height, stream.width, stream.pix_fmt = height, width, "yuv420p"
        stream.options = {"crf": "18", "preset": "veryfast"}
        for i in range(total):
            out.mux(stream.encode(av.VideoFrame.from_ndarray(loop[i % len(loop)], format="rgb24")))
        out.mux(stream.encode())


def seconds_of(fn) -> float:
    started = time.perf_counter()
    fn()
    return time.perf_counter() - started


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--seconds", type=float, default=180.0, help="video length (default 180)")
    p.add_argument("--size", default="640x360", help="WIDTHxHEIGHT (default 640x360)")
    p.add_argument("--stride", type=float, default=1.0)
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--model", choices=["demo", "k400"], default="demo",
                   help="demo: the embedded demo model; k400: the full-width network, random weights")
    p.add_argument("--rounds", type=int, default=2)
    p.add_argument("--video", default=None, help="reuse this video instead of generating one")
    p.add_argument("--out", default="build/bench_timeline", help="directory for the JSON, PNG and video")
    args = p.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    width, height = (int(x) for x in args.size.split("x"))
    video = Path(args.video) if args.video else out / f"timeline_{int(args.seconds)}s_{args.size}.mp4"
    if not video.exists():
        print(f"generating {video} ...", file=sys.stderr, flush=True)
        make_video(video, args.seconds, height, width)

    model = squeezetime.demo_model() if args.model == "demo" else squeezetime.create_model("k400").eval()
    classifier = squeezetime.load(model, batch_size=args.batch_size)
    view = classifier.data_config.view("1x1")
    sample = [w.clip for _, w in zip(range(args.batch_size), window_clips(str(video), stride=args.stride, view=view))]
    batch = np.stack(sample)
    classifier.scores(batch)  # warm-up (weight packing per batch size)
    classifier.scores(batch[:1])

    rounds = []
    for r in range(args.rounds):
        decode = seconds_of(lambda: sum(1 for _ in window_clips(str(video), stride=args.stride, view=view)))
        net1 = statistics.median(seconds_of(lambda: classifier.scores(batch[:1])) for _ in range(5))
        netb = statistics.median(seconds_of(lambda: classifier.scores(batch)) for _ in range(3)) / len(batch)
        windows = []
        wall = seconds_of(lambda: windows.extend(classifier.timeline(str(video), stride=args.stride)))
        n = len(windows)
        rounds.append({"decode_s": decode, "net_per_clip_batch1_s": net1,
                       f"net_per_clip_batch{len(batch)}_s": netb, "windows": n, "timeline_s": wall,
                       "ratio_vs_batch1": wall / (n * net1 + decode),
                       f"ratio_vs_batch{len(batch)}": wall / (n * netb + decode)})
        print(json.dumps({"round": r, **rounds[-1]}), file=sys.stderr, flush=True)
    result = {"video": str(video), "seconds": args.seconds, "size": args.size, "stride": args.stride,
              "model": args.model, "batch_size": args.batch_size, "threads": __import__("torch").get_num_threads(),
              "backend": repr(classifier.backend), "rounds": rounds}
    (out / "bench_timeline.json").write_text(json.dumps(result, indent=1))
    print(json.dumps(result, indent=1))
    draw(result, out / "bench_timeline.png")
    return 0


def draw(result: dict, path: Path) -> None:
    from squeezetime.bench.plot import figure

    key = f"net_per_clip_batch{result['batch_size']}_s"
    with figure(path, figsize=(7, 3.5), dpi=100) as (_, ax):
        for i, r in enumerate(result["rounds"]):
            net = r["windows"] * r[key]
            ax.barh(2 * i + 1, net, color="tab:blue", label="windows x network per clip" if i == 0 else None)
            ax.barh(2 * i + 1, r["decode_s"], left=net, color="tab:orange",
                    label="one sequential decode" if i == 0 else None)
            ax.barh(2 * i, r["timeline_s"], color="tab:green", label="timeline wall time" if i == 0 else None)
            ratio = r[f"ratio_vs_batch{result['batch_size']}"]
            ax.text(r["timeline_s"], 2 * i, f" {ratio:.2f}x", va="center")
        ax.set_yticks([])
        ax.set_xlabel("seconds")
        ax.set_title(f"timeline of a {result['seconds']:.0f} s {result['size']} video, stride {result['stride']} s "
                     f"({result['model']} model)")
        ax.legend(loc="lower right", fontsize=8)


if __name__ == "__main__":
    sys.exit(main())
