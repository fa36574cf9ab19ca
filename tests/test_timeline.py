"""Timelines: windows every ``stride`` seconds over one sequential decode (squeezetime.video.stream,
squeezetime.timeline, Classifier.timeline), the ``squeezetime timeline`` CLI, and Triton's streaming
``squeezetime_timeline`` model over real gRPC."""
from __future__ import annotations

import csv
import dataclasses
import fractions
import io
import json
import time

import av
import numpy as np
import pytest

import squeezetime
from squeezetime.errors import InputError, VideoError
from squeezetime.synthetic import CLASSES, encode_video, make_video, random_motion, render
from squeezetime.synthetic.generator import pose_at
from squeezetime.timeline import Timeline, Window, segments, timeline_dict
from squeezetime.video import VIEWS, BudgetError, DecodeBudget
from squeezetime.video.decode import DecodeCancelled
from squeezetime.video.stream import StreamStats, window_clips

pytestmark = pytest.mark.timeout(600)

FPS = 25
SPAN = 61                      # frames of a 16x4 clip
SEGMENT_SECONDS = 4.0
# A square path (left, down, right, up), then a zoom: one object moving without cuts, each motion 4 s.
PATH = (0, 3, 1, 2, 6)
# Every 2 s: each window is one motion, or has the turn in its last 18 % only. The demo model never saw turns,
# and a window with a turn in its middle is ambiguous by nature (it votes "rotating" about as often as not).
STRIDE = 2.0


def square_path_frames(seed: int = 4, labels=PATH, seconds: float = SEGMENT_SECONDS) -> np.ndarray:
    """Demo motions in sequence, each one's start pose the previous one's end pose (no cut)."""
    rng = np.random.default_rng(seed)
    first = random_motion(labels[0], rng)
    side = first.speed
    pose = (0.5 + side / 2, 0.5 - side / 2, first.angle, first.size)
    n = int(seconds * FPS)
    frames = []
    for label in labels:
        speed = side if label < 4 else random_motion(label, rng).speed
        cx, cy, angle, size = pose
        motion = dataclasses.replace(first, label=label, speed=speed, center=(cx, cy), angle=angle, size=size)
        frames.append(render(motion, np.arange(n) / n, 240, 320))
        pose = pose_at(motion, 1.0)
    return np.concatenate(frames)


def encode_with_times(frames: np.ndarray, times) -> bytes:
    """H.264 in MP4 with the given presentation times (seconds): a variable-frame-rate video."""
    buffer = io.BytesIO()
    base = fractions.Fraction(1, 1000)
    with av.open(buffer, "w", format="mp4") as out:
        stream = out.add_stream("libx264", rate=FPS)
        stream.height, stream.width = frames.shape[1:3]
        stream.pix_fmt = "yuv420p"
        stream.codec_context.time_base = base
        for frame, t in zip(frames, times):
            vf = av.VideoFrame.from_ndarray(frame, format="rgb24")
            vf.pts, vf.time_base = int(round(t * 1000)), base
            out.mux(stream.encode(vf))
        out.mux(stream.encode())
    return buffer.getvalue()


@pytest.fixture(scope="module")
def classifier(demo_model):
    return squeezetime.load(demo_model)


@pytest.fixture(scope="module")
def path_video(tmp_path_factory) -> str:
    path = tmp_path_factory.mktemp("timeline") / "square_path.mp4"
    path.write_bytes(encode_video(square_path_frames(), "mp4"))
    return str(path)


@pytest.fixture(scope="module")
def path_windows(classifier, path_video) -> list[Window]:
    return list(classifier.timeline(path_video, stride=STRIDE, topk=3))


# -- the timeline of motions in sequence ------------------------------------------------------------------------
def test_segments_follow_the_motions_in_order(path_windows):
    found = segments(path_windows)
    assert [s["label"] for s in found] == [CLASSES[label] for label in PATH], found
    for k, segment in enumerate(found):
        assert abs(segment["start"] - k * SEGMENT_SECONDS) <= STRIDE, found
        assert 0.5 < segment["score"] <= 1.0
    assert found[-1]["end"] <= len(PATH) * SEGMENT_SECONDS + 1e-6
    assert all(a["end"] == b["start"] for a, b in zip(found, found[1:]))


def test_windows_every_stride_seconds_each_one_clip_span(path_windows):
    frames = len(PATH) * SEGMENT_SECONDS * FPS
    assert len(path_windows) == int((frames - SPAN) // (STRIDE * FPS)) + 1
    np.testing.assert_allclose([w.start for w in path_windows], np.arange(len(path_windows)) * STRIDE, atol=1e-6)
    np.testing.assert_allclose([w.end - w.start for w in path_windows], SPAN / FPS, atol=1e-6)
    for w in path_windows:
        assert len(w.top) == 3 and w.top[0][1] >= w.top[1][1] >= w.top[2][1]
        assert w.probs.shape == (len(CLASSES),) and abs(float(w.probs.sum()) - 1) < 1e-4


def test_window_is_the_1x1_clip_the_pipeline_samples(classifier):
    """A window starting where SampleFrames centres the 1x1 clip holds exactly that clip, and scores as it."""
    video = make_video(2, seed=5, num_frames=SPAN + 2 * FPS)  # the centred clip starts at frame 25: 1 s
    windows = list(window_clips(video, stride=1.0, view=VIEWS["1x1"]))
    assert [w.indices[0] for w in windows] == [0, 25, 50]
    expected = classifier.clips(video, "1x1")[0]
    np.testing.assert_array_equal(windows[1].clip, expected)
    timeline = list(classifier.timeline(video, stride=1.0, topk=8))
    np.testing.assert_allclose(timeline[1].probs, classifier.scores(expected[None])[0].numpy(), atol=1e-6)


def test_a_video_shorter_than_a_window_gives_one_looped_window(classifier):
    video = make_video(6, seed=11, num_frames=30)
    windows = list(classifier.timeline(video, stride=0.5, topk=2))
    assert len(windows) == 1
    assert windows[0].start == 0 and windows[0].end == pytest.approx(30 / FPS, abs=1e-6)
    (clip,) = [w.clip for w in window_clips(video, stride=0.5, view=VIEWS["1x1"])]
    np.testing.assert_array_equal(clip, classifier.clips(video, "1x1")[0])  # mmaction2's loop: indices mod 30
    assert segments(windows) == [{"start": 0.0, "end": round(30 / FPS, 6), "label": windows[0].top[0][0],
                                  "score": windows[0].top[0][1]}]


def test_variable_frame_rate_windows_follow_timestamps():
    """4 s at 25 fps, then 10 s at 10 fps: windows every second of time, not every 25 frames."""
    frames = render(random_motion(0, np.random.default_rng(1)), np.linspace(0, 1, 200), 240, 320)
    times = np.concatenate([np.arange(100) / 25, 4.0 + np.arange(100) / 10])
    windows = list(window_clips(encode_with_times(frames, times), stride=1.0, view=VIEWS["1x1"]))
    assert [w.indices[0] for w in windows] == [0, 25, 50, 75, 100, 110, 120, 130]
    np.testing.assert_allclose([w.start for w in windows], np.arange(8), atol=1e-6)
    assert windows[-1].end == pytest.approx(4.0 + 9.0 + 0.1, abs=1e-6)  # last frame 190 at 13 s, plus a frame


# -- streaming: windows as they are decoded, memory bounded by one clip span ----------------------------------------
def test_first_window_comes_before_the_video_is_decoded(classifier, path_video):
    total = int(len(PATH) * SEGMENT_SECONDS * FPS)
    timeline = classifier.timeline(path_video, stride=STRIDE, batch_size=1)
    first = next(timeline)
    # the read-ahead is one window queued and one being decoded: at most 3 windows' worth of frames ahead
    assert first.start == 0 and SPAN <= timeline.stats.frames_decoded <= SPAN + 3 * STRIDE * FPS < total
    # The bound holds whatever the speeds: the read-ahead queue (batch_size 1) blocks the decode thread.
    timeline.close()  # stops the decode thread and joins it: the video is never decoded to its end
    assert timeline.stats.finished and timeline.stats.frames_decoded < total  # finished: no frame comes after


def test_memory_holds_one_clip_span_of_frames(path_video):
    stats = StreamStats()
    clips = list(window_clips(path_video, stride=4 / FPS, view=VIEWS["1x1"], stats=stats))  # every 4 frames
    assert len(clips) == (500 - SPAN) // 4 + 1
    assert stats.max_buffered <= SPAN and stats.frames_decoded == 500
    # frames no window needs are never converted: the first span (a short video would loop over it), then 1 in 4
    assert stats.frames_converted == SPAN + len(range(64, 500, 4))


def test_windows_are_batched_when_several_are_ready(classifier, path_video):
    """The network gets every window that is ready (up to batch_size), never waits for more. Ordered with events,
    not sleeps: the decode thread (its stop check, every 16 frames) holds after window 0 until the network has
    taken it alone, and the network's first call returns once windows 1 to 4 are queued (the queue holds 4)."""
    import threading

    first_taken, four_queued = threading.Event(), threading.Event()
    window_4_closes = SPAN - 1 + 4 * FPS  # frame index: stride 1 s = 25 frames

    def decode_checkpoint() -> bool:  # the timeline's should_stop, also asked by the consumer between windows
        if threading.current_thread().name != "squeezetime-timeline-decode":
            return False
        decoded = timeline.stats.frames_decoded
        if SPAN <= decoded < SPAN + FPS:   # window 0 is queued, window 1 is not closed yet
            assert first_taken.wait(timeout=120)
        if decoded > window_4_closes:
            four_queued.set()
        return False

    sizes = []

    def network(clips):
        sizes.append(len(clips))
        if len(sizes) == 1:
            first_taken.set()
            assert four_queued.wait(timeout=120)
        return classifier.scores(clips).numpy()

    timeline = Timeline(path_video, classifier.data_config, classifier.class_names, network, stride=1.0,
                        batch_size=4, should_stop=decode_checkpoint)
    windows = list(timeline)
    assert sum(sizes) == len(windows) == int((500 - SPAN) // FPS) + 1
    assert sizes[:2] == [1, 4]


# -- bad input ------------------------------------------------------------------------------------------------------
def test_bad_input_is_a_clear_error(classifier, tmp_path):
    with pytest.raises(VideoError, match="not a readable video"):
        list(classifier.timeline(b"not a video at all" * 20))
    with pytest.raises(VideoError, match="no such file"):
        list(classifier.timeline(str(tmp_path / "missing.mp4")))
    for stride in (0, -1, float("nan"), "1"):
        with pytest.raises(InputError, match="stride"):
            classifier.timeline(make_video(0, seed=1), stride=stride)
    with pytest.raises(InputError, match="topk"):
        classifier.timeline(make_video(0, seed=1), topk=0)
    one_frame = encode_video(np.full((1, 240, 320, 3), 80, np.uint8), "mp4")
    with pytest.raises(BudgetError, match="allow_still_images"):
        list(classifier.timeline(one_frame))


def test_budget_and_cancellation_stop_the_decode(classifier, path_video):
    def network(clips):
        return classifier.scores(clips).numpy()

    with pytest.raises(BudgetError, match="max_frames"):
        list(Timeline(path_video, classifier.data_config, classifier.class_names, network, stride=STRIDE,
                      budget=DecodeBudget(max_frames=100)))
    seen = []
    timeline = classifier.timeline(path_video, stride=STRIDE, should_stop=lambda: len(seen) >= 2)
    with pytest.raises(DecodeCancelled):
        for window in timeline:
            seen.append(window)
    assert len(seen) == 2 and timeline.stats.finished


def test_segments_merge_consecutive_windows():
    def window(start, label, p):
        return Window(start, start + 2.0, [(label, p), ("other", 1 - p)], np.array([p, 1 - p], np.float32))

    windows = [window(0, "a", 0.9), window(1, "a", 0.7), window(2, "b", 0.6), window(3, "a", 0.8)]
    assert segments(windows) == [
        {"start": 0.0, "end": 2.5, "label": "a", "score": pytest.approx(0.8)},
        {"start": 2.5, "end": 3.5, "label": "b", "score": pytest.approx(0.6)},
        {"start": 3.5, "end": 5.0, "label": "a", "score": pytest.approx(0.8)}]
    assert segments([]) == []
    assert timeline_dict("v.mp4", windows[:1]) == {
        "video": "v.mp4", "windows": [{"start": 0, "end": 2.0, "top": [["a", 0.9], ["other", pytest.approx(0.1)]]}],
        "segments": [{"start": 0.0, "end": 2.0, "label": "a", "score": pytest.approx(0.9)}]}


# -- the CLI ----------------------------------------------------------------------------------------------------------
def run_cli(capsys, *argv) -> tuple[int, str, str]:
    from squeezetime.cli import main

    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_cli_json_and_plot(capsys, tmp_path, path_video, path_windows):
    plot = tmp_path / "timeline.png"
    code, out, err = run_cli(capsys, "timeline", path_video, "--demo", "--stride", str(STRIDE), "--topk", "3",
                             "--json", "--plot", str(plot))
    assert code == 0
    result = json.loads(out)
    assert result["video"] == path_video and set(result) == {"video", "windows", "segments"}
    assert len(result["windows"]) == len(path_windows)
    for got, expected in zip(result["windows"], path_windows):
        assert got["start"] == pytest.approx(expected.start) and got["end"] == pytest.approx(expected.end)
        assert [label for label, _ in got["top"]] == [label for label, _ in expected.top]
        np.testing.assert_allclose([p for _, p in got["top"]], [p for _, p in expected.top], atol=1e-5)
    expected_segments = segments(path_windows)  # scores: float32 sums, batched differently in the CLI run
    assert [(g["start"], g["end"], g["label"]) for g in result["segments"]] == \
           [(e["start"], e["end"], e["label"]) for e in expected_segments]
    np.testing.assert_allclose([g["score"] for g in result["segments"]], [e["score"] for e in expected_segments],
                               atol=1e-5)
    assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and plot.stat().st_size > 10_000


def test_cli_csv_and_text(capsys, tmp_path):
    video = tmp_path / "short.mkv"
    video.write_bytes(make_video(1, seed=3, num_frames=SPAN + FPS, container="mkv"))  # two windows at stride 1
    code, out, _ = run_cli(capsys, "timeline", str(video), "--demo", "--topk", "2", "--csv")
    assert code == 0
    rows = list(csv.reader(io.StringIO(out)))
    assert rows[0] == ["start", "end", "label_1", "prob_1", "label_2", "prob_2"]
    assert [row[:2] for row in rows[1:]] == [["0.000", "2.440"], ["1.000", "3.440"]]
    assert float(rows[1][3]) >= float(rows[1][5])
    code, out, _ = run_cli(capsys, "timeline", str(video), "--demo", "--topk", "1")
    assert code == 0
    lines = out.splitlines()
    assert len(lines) == 2 + 1 + len(segments_of_rows(rows)) and lines[2] == "segments:"
    assert lines[0].split()[:2] == ["0.00", "2.44"] and rows[1][2] in lines[0]


def segments_of_rows(rows) -> list[str]:
    labels = [row[2] for row in rows[1:]]
    return [label for i, label in enumerate(labels) if i == 0 or labels[i - 1] != label]


def test_cli_errors(capsys, tmp_path):
    bad = tmp_path / "bad.mp4"
    bad.write_bytes(b"garbage" * 100)
    code, out, err = run_cli(capsys, "timeline", str(bad), "--demo", "--json")
    assert code == 1 and out == "" and f"error: {bad}: " in err and "not a readable video" in err
    with pytest.raises(SystemExit) as stop:
        run_cli(capsys, "timeline", str(bad), "--demo", "--stride", "0")
    assert stop.value.code == 2
    with pytest.raises(SystemExit) as stop:
        run_cli(capsys, "timeline", str(bad), "--demo", "--json", "--csv")
    assert stop.value.code == 2


# -- Triton: squeezetime_timeline streams the windows over gRPC ------------------------------------------------
@pytest.fixture(scope="module")
def triton(tmp_path_factory):
    from support.triton import model_for_tests, require_tritonserver, running

    from squeezetime.serving.triton import RepoOptions, TritonServer, write_repository

    require_tritonserver()
    repo = write_repository(tmp_path_factory.mktemp("timeline_repo"), model_for_tests(),
                            options=RepoOptions(max_batch_size=8, num_threads=2, decode_threads=2))
    with running(TritonServer(repo, start_timeout=240)) as server:
        yield server


def clip_model_inferences(client) -> int:
    stats = client.client.get_inference_statistics("squeezetime", as_json=True, client_timeout=60)
    return int(stats["model_stats"][0].get("inference_count", 0))


def cancelled_count(metrics_url: str) -> float:
    import urllib.request

    with urllib.request.urlopen(metrics_url, timeout=30) as r:
        text = r.read().decode()
    key = 'squeezetime_rejections_total{model="squeezetime_timeline",reason="cancelled"}'
    return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines() if line.startswith(key))


def test_triton_streams_the_same_windows_as_classifier_timeline(triton, path_video, capsys):
    from support.triton import model_for_tests

    from squeezetime.triton import TritonClient

    expected = list(squeezetime.load(model_for_tests()).timeline(path_video, stride=STRIDE, topk=3))
    with TritonClient(triton.grpc_url, timeout=120) as client:
        served = list(client.timeline(path_video, stride=STRIDE, topk=3))
    assert len(served) == len(expected)
    for got, want in zip(served, expected):
        assert got.start == pytest.approx(want.start, abs=1e-5) and got.end == pytest.approx(want.end, abs=1e-5)
        assert [label for label, _ in got.top] == [label for label, _ in want.top]
        np.testing.assert_allclose([p for _, p in got.top], [p for _, p in want.top], atol=1e-4)

    from squeezetime.cli import main

    assert main(["client", "--url", triton.grpc_url, "--timeline", path_video, "--stride", str(STRIDE),
                 "--topk", "1", "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert [s["label"] for s in result["segments"]] == [s["label"] for s in segments(expected)]


def test_triton_timeline_refuses_bad_requests(triton):
    from squeezetime.triton import TritonClient, TritonRequestError

    with TritonClient(triton.grpc_url, timeout=120) as client:
        with pytest.raises(TritonRequestError, match="not a readable video"):
            list(client.timeline(b"garbage" * 100))
        with pytest.raises(TritonRequestError, match="STRIDE"):
            list(client.timeline(make_video(0, seed=1), stride=-1))


def test_a_cancelled_stream_stops_the_server_work(triton, path_video):
    from squeezetime.triton import TritonClient

    windows = (500 - SPAN) // 5 + 1  # stride 0.2 s: 88 windows if it ran to the end
    with TritonClient(triton.grpc_url, timeout=120) as client:
        before, cancelled = clip_model_inferences(client), cancelled_count(triton.metrics_url)
        stream = client.timeline(path_video, stride=0.2, topk=1)
        first = next(stream)
        stream.close()  # stop_stream(cancel_requests=True)
        assert first.start == 0
        deadline = time.monotonic() + 60  # a wait for the server's counter (typically < 1 s), not a timing
        while cancelled_count(triton.metrics_url) < cancelled + 1:  # the server saw the cancel and stopped
            assert time.monotonic() < deadline, "the server never stopped the cancelled timeline"
            time.sleep(0.2)
        # stopped well before the end (a window in flight at the cancel may still be scored)
        assert clip_model_inferences(client) - before < windows
        # and it serves the next request
        assert len(list(client.timeline(make_video(3, seed=2), stride=1.0, topk=1))) == 1
