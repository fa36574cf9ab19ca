"""``squeezetime bench-video``: what getting clips out of a video costs, before and after issue 13.

Generates H.264 videos (squeezetime.video.generate: 10 s, 60 s, 3 min; 320x240, 640x360, 1080p; a 2 s and a
10 s GOP, 3 B-frames) into ``--videos`` (kept between runs) and, per video and views (1x1, 10x3), times
interleaved in one process:
- ``old``: the pipeline before issue 13 (two demuxes, every frame decoded and converted, float resize);
- ``new``: ``sample_clips`` (the seeking reader, cv2 resize);
- ``bare``: PyAV decoding the same frames with the same seeks, to its native pixel format, no conversion;
and in a fresh subprocess each, the peak RSS of the process for ``old`` and ``new``. ``network`` is the
k400 network (random weights, width 1.0, backend auto) on the clips of one video. Writes DIR/bench_video.json
and DIR/bench_video.png and prints the JSON; ``targets`` holds issue 13's three decode targets.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time

FPS = 25
SIZES = {"320x240": (320, 240), "640x360": (640, 360), "1080p": (1920, 1080)}
GOPS = {"gop2s": 2 * FPS, "gop10s": 10 * FPS}
LENGTHS = (10, 60, 180)
VIEWS = ("1x1", "10x3")
# --quick: what issue 13's targets need, and the smallest of each kind
QUICK = [(10, "320x240", "gop2s"), (10, "640x360", "gop2s"), (10, "640x360", "gop10s"), (180, "640x360", "gop2s"),
         (10, "1080p", "gop2s")]


def register(sub) -> None:
    p = sub.add_parser("bench-video", help="benchmark video decoding + clip sampling (before/after issue 13)")
    p.add_argument("--out", default="build/bench_video", help="output directory (JSON, PNG)")
    p.add_argument("--videos", default=None, help="where generated videos are kept (default: OUT/videos)")
    p.add_argument("--quick", action="store_true", help="a subset: " + ", ".join(f"{s}s {r} {g}" for s, r, g in QUICK))
    p.add_argument("--only", action="append", default=None, metavar="SECONDSxSIZExGOP",
                   help="just these videos, e.g. 180x640x360xgop2s (repeatable)")
    p.add_argument("--views", choices=VIEWS, action="append", default=None, help="default: both")
    p.add_argument("--repeats", type=int, default=3, help="interleaved timings per method (median reported)")
    p.add_argument("--no-memory", action="store_true", help="skip the peak-RSS subprocesses")
    p.add_argument("--no-network", action="store_true", help="skip timing the network")
    p.set_defaults(func=run)


def video_cases(args) -> list[tuple[int, str, str]]:
    if args.only:
        cases = []
        for text in args.only:
            seconds, width, height, gop = text.split("x")
            size = next(k for k, v in SIZES.items() if v == (int(width), int(height)))
            cases.append((int(seconds), size, gop))
        return cases
    if args.quick:
        return list(QUICK)
    return [(s, r, g) for s in LENGTHS for r in SIZES for g in GOPS]


def video_path(directory: str, seconds: int, size: str, gop: str) -> str:
    """The generated video (made once; the name says what it is)."""
    from ..video.generate import make_test_video

    os.makedirs(directory, exist_ok=True)
    path = os.path.join(directory, f"h264_{seconds}s_{size}_{gop}.mp4")
    if not os.path.exists(path):
        width, height = SIZES[size]
        partial = path + ".part.mp4"
        make_test_video(partial, frames=seconds * FPS, width=width, height=height, fps=FPS, gop=GOPS[gop],
                        bframes=3, options={"preset": "veryfast" if size != "1080p" else "ultrafast"})
        os.replace(partial, path)
    return path


def bare_decode(path: str, plan: list, pts) -> int:
    """PyAV alone: the reader's seeks, each run decoded to its last wanted frame, no conversion."""
    import av

    decoded = 0
    with av.open(path) as container:
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        for key, run in plan:
            container.seek(int(pts[key]), stream=stream, backward=True)
            last = int(pts[run[-1]])
            for frame in container.decode(stream):
                decoded += 1
                if frame.pts is not None and frame.pts >= last:
                    break
    return decoded


def time_methods(path: str, views: str, repeats: int) -> dict:
    from ..video.decode import VideoReader
    from ..video.sampling import sample_frame_indices
    from ..video.views import _sample_clips_full_decode, get_view, sample_clips

    with VideoReader(path) as reader:
        indices = sample_frame_indices(reader.num_frames, 16, 4, get_view(views).num_clips)
        plan, total = reader.plan(indices.ravel()), reader.num_frames
        # the timestamps the seeks need, read while the file is open (an MP4 index is read in place: IndexTable)
        pts = {i: int(reader.table.pts[i]) for key, run in plan for i in (key, run[-1])}
    methods = {"old": lambda: _sample_clips_full_decode(path, views), "new": lambda: sample_clips(path, views),
               "bare": lambda: bare_decode(path, plan, pts)}
    times: dict[str, list[float]] = {name: [] for name in methods}
    for _ in range(repeats):
        for name, method in methods.items():  # interleaved: load on this machine hits all three alike
            started = time.perf_counter()
            method()
            times[name].append((time.perf_counter() - started) * 1e3)
    result = {f"{name}_ms": statistics.median(t) for name, t in times.items()}
    result.update(frames=total, wanted=int(len(set(indices.ravel().tolist()))), seeks=len(plan))
    return result


PEAK_PROBE = """
import json, sys
from squeezetime.video.views import _sample_clips_full_decode, sample_clips
sample = {"old": _sample_clips_full_decode, "new": sample_clips}[sys.argv[2]]
clips = sample(sys.argv[1], sys.argv[3])
peak = next(line for line in open("/proc/self/status") if line.startswith("VmHWM:"))
print(json.dumps({"peak_rss_mb": int(peak.split()[1]) / 1024, "clips_mb": clips.nbytes / 2**20}))
"""
# VmHWM, not getrusage's ru_maxrss: Linux carries the parent's peak into a child over fork + exec.


def peak_memory(path: str, method: str, views: str) -> dict:
    out = subprocess.run([sys.executable, "-c", PEAK_PROBE, path, method, views], capture_output=True, text=True,
                         timeout=1800)
    if out.returncode != 0:
        return {"error": out.stderr.strip().splitlines()[-1] if out.stderr.strip() else "failed"}
    return json.loads(out.stdout.strip().splitlines()[-1])


def network_ms(repeats: int) -> dict:
    """Milliseconds of the k400 network (random weights) on the clips of one video, per views."""
    import numpy as np

    import squeezetime

    classifier = squeezetime.load(squeezetime.create_model("k400"))
    result = {"backend": classifier.backend.name}
    for views in VIEWS:
        clips = np.random.default_rng(0).integers(0, 256, (1 if views == "1x1" else 30, 16, 224, 224, 3),
                                                  dtype=np.uint8)
        classifier.scores(clips[:1])  # warm-up
        times = []
        for _ in range(max(1, repeats - 1)):
            started = time.perf_counter()
            classifier.scores(clips)
            times.append((time.perf_counter() - started) * 1e3)
        result[views] = statistics.median(times)
    return result


def targets(rows: list[dict]) -> dict:
    def find(seconds, size, gop, views):
        return next((r for r in rows if (r["seconds"], r["size"], r["gop"], r["views"]) == (seconds, size, gop,
                                                                                             views)), None)

    out = {}
    long, short = find(180, "640x360", "gop2s", "1x1"), find(10, "640x360", "gop2s", "1x1")
    if long and short:
        ratio = long["new_ms"] / short["new_ms"]
        out["1x1 3 min / 10 s (640x360, 2 s GOP), <= 2"] = {"ratio": ratio, "met": ratio <= 2}
    tenx3 = find(10, "640x360", "gop2s", "10x3")
    if tenx3:
        ratio = tenx3["new_ms"] / tenx3["bare_ms"]
        out["10x3 10 s 640x360: new / bare decode of the same frames, <= 2"] = {"ratio": ratio, "met": ratio <= 2}
    hd = find(10, "1080p", "gop2s", "10x3")
    if hd and "new_peak_rss_mb" in hd:
        out["1080p 10x3 peak RSS MB, <= 600"] = {"value": hd["new_peak_rss_mb"], "met": hd["new_peak_rss_mb"] <= 600}
    return out


def plot(results: dict, path: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    rows = results["rows"]
    labels = [f"{r['seconds']}s {r['size']}\n{r['gop']} {r['views']}" for r in rows]
    x = np.arange(len(rows))
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(max(8, 0.9 * len(rows) + 2), 8), sharex=True)
    for k, (name, color) in enumerate([("old", "tab:red"), ("new", "tab:green"), ("bare", "tab:gray")]):
        top.bar(x + (k - 1) * 0.27, [r[f"{name}_ms"] for r in rows], 0.27, label=name, color=color)
    for views, ms in results.get("network_ms", {}).items():
        if views in VIEWS:
            top.axhline(ms, ls="--", lw=0.8, color="tab:blue" if views == "1x1" else "tab:purple",
                        label=f"network {views}")
    top.set_yscale("log")
    top.set_ylabel("decode + sample, ms (median)")
    top.legend(fontsize=8)
    top.set_title("clips from a video: before (old) and after (new) issue 13; bare = PyAV, same frames")
    for k, (name, color) in enumerate([("old", "tab:red"), ("new", "tab:green")]):
        bottom.bar(x + (k - 0.5) * 0.4, [r.get(f"{name}_peak_rss_mb", 0) for r in rows], 0.4, label=name,
                   color=color)
    bottom.axhline(600, ls="--", lw=0.8, color="black", label="600 MB target")
    bottom.set_ylabel("peak RSS of the process, MB")
    bottom.legend(fontsize=8)
    bottom.set_xticks(x, labels, fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def run(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from .common import EXIT_OK, EXIT_USAGE

    try:
        cases = video_cases(args)
    except (ValueError, StopIteration):
        print(f"error: --only takes SECONDSxWIDTHxHEIGHTxGOP, e.g. 180x640x360xgop2s; sizes {list(SIZES.values())}, "
              f"GOPs {list(GOPS)}", file=sys.stderr)
        return EXIT_USAGE
    views_list = args.views or list(VIEWS)
    videos = args.videos or os.path.join(args.out, "videos")
    os.makedirs(videos, exist_ok=True)
    rows = []
    for seconds, size, gop in tqdm(cases, desc="bench-video: generating", unit="video", file=sys.stderr):
        video_path(videos, seconds, size, gop)
    with tqdm(total=len(cases) * len(views_list), desc="bench-video", unit="case", file=sys.stderr) as bar:
        for seconds, size, gop in cases:
            path = video_path(videos, seconds, size, gop)
            for views in views_list:
                row = {"seconds": seconds, "size": size, "gop": gop, "views": views, "video": path}
                row.update(time_methods(path, views, args.repeats))
                if not args.no_memory:
                    for method in ("old", "new"):
                        peak = peak_memory(path, method, views)
                        row[f"{method}_peak_rss_mb"] = peak.get("peak_rss_mb")
                        row["clips_mb"] = peak.get("clips_mb", row.get("clips_mb"))
                rows.append(row)
                bar.update()
    results = {"command": "squeezetime bench-video " + " ".join(sys.argv[2:]), "cpus": os.cpu_count(),
               "load_average": os.getloadavg(), "rows": rows}
    if not args.no_network:
        results["network_ms"] = network_ms(args.repeats)
    results["targets"] = targets(rows)
    os.makedirs(args.out, exist_ok=True)
    json_path, png_path = os.path.join(args.out, "bench_video.json"), os.path.join(args.out, "bench_video.png")
    with open(json_path, "w") as f:
        json.dump(results, f, indent=2)
    plot(results, png_path)
    print(json.dumps(results, indent=2))
    print(f"wrote {json_path} and {png_path}", file=sys.stderr)
    return EXIT_OK
