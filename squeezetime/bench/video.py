"""What getting clips out of a video costs, before and after issue 13 (``squeezetime bench-video``).

Generates H.264 videos (squeezetime.video.generate: 10 s, 60 s, 3 min; 320x240, 640x360, 1080p; a 2 s and a
10 s GOP, 3 B-frames) into a directory kept between runs and, per video and views (1x1, 10x3), times
interleaved in one process:
- ``old``: the pipeline before issue 13 (two demuxes, every frame decoded and converted, float resize);
- ``new``: ``sample_clips`` (the seeking reader, cv2 resize);
- ``bare``: PyAV decoding the same frames with the same seeks, to its native pixel format, no conversion;
and in a fresh subprocess each, the peak RSS of the process for ``old`` and ``new``. ``network`` is the
k400 network (random weights, width 1.0, backend auto) on the clips of one video. ``write_report`` writes
DIR/bench_video.json and DIR/bench_video.png; ``targets`` holds issue 13's three decode targets.
"""
from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import time

from .plot import figure

FPS = 25
SIZES = {"320x240": (320, 240), "640x360": (640, 360), "1080p": (1920, 1080)}
GOPS = {"gop2s": 2 * FPS, "gop10s": 10 * FPS}
LENGTHS = (10, 60, 180)
VIEWS = ("1x1", "10x3")
# --quick: what issue 13's targets need, and the smallest of each kind
QUICK = [(10, "320x240", "gop2s"), (10, "640x360", "gop2s"), (10, "640x360", "gop10s"), (180, "640x360", "gop2s"),
         (10, "1080p", "gop2s")]


def video_cases(only: list[str] | None = None, quick: bool = False) -> list[tuple[int, str, str]]:
    """(seconds, size, GOP) of each video: ``only``'s SECONDSxWIDTHxHEIGHTxGOP names, the quick set, or all.
    ValueError or StopIteration: a name that is not one of ours."""
    if only:
        cases = []
        for text in only:
            seconds, width, height, gop = text.split("x")
            size = next(k for k, v in SIZES.items() if v == (int(width), int(height)))
            cases.append((int(seconds), size, gop))
        return cases
    if quick:
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
    from ..video.views import get_view, sample_clips, sample_clips_full_decode

    with VideoReader(path) as reader:
        indices = sample_frame_indices(reader.num_frames, 16, 4, get_view(views).num_clips)
        plan, total = reader.plan(indices.ravel()), reader.num_frames
        # the timestamps the seeks need, read while the file is open (an MP4 index is read in place: IndexTable)
        pts = {i: int(reader.table.pts[i]) for key, run in plan for i in (key, run[-1])}
    methods = {"old": lambda: sample_clips_full_decode(path, views), "new": lambda: sample_clips(path, views),
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
from squeezetime.video.views import sample_clips_full_decode, sample_clips
sample = {"old": sample_clips_full_decode, "new": sample_clips}[sys.argv[2]]
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

    from ..classifier import load
    from ..models import create_model

    classifier = load(create_model("k400"))
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
    """Top: decode + sample ms per video and method (log), the network's ms as lines; bottom: peak RSS."""
    import numpy as np

    rows = results["rows"]
    labels = [f"{r['seconds']}s {r['size']}\n{r['gop']} {r['views']}" for r in rows]
    x = np.arange(len(rows))
    with figure(path, 2, 1, figsize=(max(8, 0.9 * len(rows) + 2), 8), sharex=True) as (_, (top, bottom)):
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


def measure_case(path: str, views: str, repeats: int, memory: bool) -> dict:
    """One row: the three methods timed on ``path`` for ``views`` and, with ``memory``, their peak RSS."""
    row = time_methods(path, views, repeats)
    if memory:
        for method in ("old", "new"):
            peak = peak_memory(path, method, views)
            row[f"{method}_peak_rss_mb"] = peak.get("peak_rss_mb")
            row["clips_mb"] = peak.get("clips_mb", row.get("clips_mb"))
    return row


def run_video_bench(cases: list[tuple[int, str, str]], views_list: list[str], videos: str, *, repeats: int = 3,
                    memory: bool = True, network: bool = True, command: str = "") -> dict:
    """Every case and views, the videos generated first into ``videos``; the results ``write_report`` writes."""
    from tqdm import tqdm

    os.makedirs(videos, exist_ok=True)
    rows = []
    for seconds, size, gop in tqdm(cases, desc="bench-video: generating", unit="video", file=sys.stderr):
        video_path(videos, seconds, size, gop)
    with tqdm(total=len(cases) * len(views_list), desc="bench-video", unit="case", file=sys.stderr) as bar:
        for seconds, size, gop in cases:
            path = video_path(videos, seconds, size, gop)
            for views in views_list:
                row = {"seconds": seconds, "size": size, "gop": gop, "views": views, "video": path}
                row.update(measure_case(path, views, repeats, memory))
                rows.append(row)
                bar.update()
    results = {"command": command, "cpus": os.cpu_count(), "load_average": os.getloadavg(), "rows": rows}
    if network:
        results["network_ms"] = network_ms(repeats)
    results["targets"] = targets(rows)
    return results


def write_report(results: dict, out: str) -> tuple[str, str]:
    """OUT/bench_video.json and OUT/bench_video.png."""
    os.makedirs(out, exist_ok=True)
    json_path, png_path = os.path.join(out, "bench_video.json"), os.path.join(out, "bench_video.png")
    with open(json_path, "w") as f:
        json.dump(results, f, indent=2)
    plot(results, png_path)
    return json_path, png_path


__all__ = ["GOPS", "LENGTHS", "QUICK", "SIZES", "VIEWS", "bare_decode", "network_ms", "peak_memory", "plot",
           "run_video_bench", "targets", "time_methods", "video_cases", "video_path", "write_report"]
