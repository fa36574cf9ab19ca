"""The decode budget: every video is untrusted, so the video's size (header: pixels per frame, frames, duration,
pixel rate) and a request's work (frames decoded, CPU seconds) are bounded, and still images are not videos. Over
budget is a ``BudgetError`` (a ``VideoError``) naming the setting. Work is asserted with counters (``DecodeMeter``)
and an injected clock, never with the wall clock."""
from __future__ import annotations

import av
import numpy as np
import pytest

import squeezetime
from squeezetime.synthetic import encode_video
from squeezetime.video import BudgetError, DecodeBudget, DecodeMeter, VideoReader, get_view, sample_frame_indices
from squeezetime.video.generate import make_test_video
from support.media import png


@pytest.fixture(scope="module")
def classifier():
    return squeezetime.load(squeezetime.DEMO)


@pytest.fixture(scope="module")
def video_8k() -> bytes:
    """Three different 7680x4320 frames (identical ones are a still image; of two, the 1x1 clip's frames 0, 4, 8...
    modulo 2 would all be the first, and the clip shows no motion)."""
    levels = np.array([0, 90, 180], np.uint8)[:, None, None, None]
    return encode_video(np.zeros((3, 4320, 7680, 3), np.uint8) + levels, "mp4")


@pytest.mark.slow
def test_8k_frames_are_over_the_default_pixel_budget(classifier, video_8k):
    with pytest.raises(BudgetError, match=r"7680x4320 \(33.2 Mpixels\) are over the limit .* \(setting max_pixels\)"):
        classifier.classify(video_8k)
    roomy = squeezetime.Classifier(classifier.backend, classifier.data_config, classifier.class_names,
                                   budget=DecodeBudget(max_pixels=7680 * 4320))
    assert roomy.clips(video_8k).shape == (1, 16, 224, 224, 3)  # the setting raises the limit


def test_oversized_frames_are_refused_from_the_header(classifier, video_8k, monkeypatch):
    """An over-budget frame size is refused by an open that decodes no frame (ffmpeg's usual stream probing
    decodes one at full size: 0.1 s for 8K H.264), and the video is not opened a second time."""
    from squeezetime.video import decode

    opens = []
    real_open = av.open

    def recording_open(*args, **kwargs):
        opens.append(kwargs.get("options"))
        return real_open(*args, **kwargs)

    monkeypatch.setattr(decode.av, "open", recording_open)
    with pytest.raises(BudgetError, match="setting max_pixels"):
        classifier.classify(video_8k)
    assert opens == [{"skip_frame": "all"}]


def test_too_many_frames(classifier):
    video = encode_video(np.zeros((600, 64, 64, 3), np.uint8) + 40, "mp4")
    tight = squeezetime.Classifier(None, classifier.data_config, classifier.class_names,
                                   budget=DecodeBudget(max_frames=500))
    with pytest.raises(BudgetError, match=r"more than 500 frames \(setting max_frames\)"):
        tight.clips(video)


class TickingClock:
    """A CPU clock for the budget that advances ``step`` seconds each time it is read."""

    def __init__(self, step: float):
        self.now, self.step = 0.0, step

    def __call__(self) -> float:
        self.now += self.step
        return self.now


def test_a_decode_over_its_cpu_seconds_stops_where_it_is(classifier):
    budget = DecodeBudget(max_seconds=5.0, clock=TickingClock(1.0))  # each check (every 16 frames) costs 1 "s"
    meter = DecodeMeter(budget, "x")
    with pytest.raises(BudgetError, match=r"over 5 CPU seconds \(setting max_decode_seconds\)"):
        squeezetime.sample_clips(make_test_video(frames=300), "10x3", budget=budget, meter=meter)
    assert meter.seconds > 5.0
    assert 16 < meter.frames_decoded <= 16 * 5 + 1  # stopped at the check that went over, not at the end


def test_a_decode_over_its_frames_stops_where_it_is():
    video = make_test_video(frames=300, gop=300)  # one keyframe: the 1x1 centre clip needs frames 0..179
    meter = DecodeMeter(DecodeBudget(max_decoded_frames=50), "x")
    with pytest.raises(BudgetError, match=r"more than 50 frames decoded .* \(setting max_decoded_frames\)"):
        squeezetime.sample_clips(video, "1x1", budget=DecodeBudget(max_decoded_frames=50), meter=meter)
    assert meter.frames_decoded == 51


def test_a_long_stream_that_only_decodes_linearly_is_bounded_too():
    """A raw H.264 stream has no timestamps to seek by: the linear decode stops at max_decoded_frames, it does not
    go on to the end of the file to count its frames."""
    video = make_test_video(frames=400, container="h264")
    meter = DecodeMeter(DecodeBudget(max_decoded_frames=100), "x")
    with pytest.raises(BudgetError, match="setting max_decoded_frames"):
        squeezetime.sample_clips(video, "1x1", budget=DecodeBudget(max_decoded_frames=100), meter=meter)
    assert meter.frames_decoded == 101


def frames_the_views_need(path, views: str) -> int:
    """Frames a seeking decode of the view's clips decodes: from each run's keyframe to its last wanted frame."""
    view = get_view(views)
    with VideoReader(path, DecodeBudget(allow_still_images=True)) as reader:
        wanted = sample_frame_indices(reader.num_frames, 16, 4, view.num_clips)
        return sum(run[-1] - key + 1 for key, run in reader.plan(wanted.ravel()))


@pytest.mark.parametrize("views", ["1x1", "10x3"])
def test_a_long_still_video_is_refused_from_the_frames_its_views_decode(long_still_video, views):
    """The 200,000 identical frames of issue 18 (refused after 24 s of decoding every frame, before): refused as a
    still image from the frames the view decodes anyway, no more (the timing is benchmarks/bench_refusal.py's)."""
    meter = DecodeMeter(squeezetime.video.DEFAULT_BUDGET, "x")
    with pytest.raises(BudgetError, match=r"a still image \(200000 frames.*\(setting allow_still_images\)"):
        squeezetime.sample_clips(long_still_video, views, meter=meter)
    assert 0 < meter.frames_decoded <= frames_the_views_need(long_still_video, views)
    assert meter.frames_decoded <= 10 * (250 + 61)  # at most a GOP and a clip span per clip, whatever the length


@pytest.mark.parametrize("setting,budget", [
    ("max_frames", DecodeBudget(max_frames=100_000)),
    ("max_duration", DecodeBudget(max_duration=3600)),
    ("max_pixel_rate", DecodeBudget(max_pixel_rate=64 * 64 * 24)),
])
def test_a_video_over_its_size_is_refused_from_the_header(long_still_video, setting, budget):
    meter = DecodeMeter(budget, "x")
    with pytest.raises(BudgetError, match=rf"\(setting {setting}\)"):
        squeezetime.sample_clips(long_still_video, "1x1", budget=budget, meter=meter)
    assert meter.frames_decoded == 0


def test_the_default_budget_is_sized_in_frames_decoded_per_request():
    budget = DecodeBudget()
    assert budget.max_decoded_frames >= 10 * (250 + 61)  # 10x3 on a 10 s GOP at 25 fps (x264's default)
    assert "max_decoded_frames=3200" in repr(budget)


def test_a_still_image_is_not_a_video(classifier):
    with pytest.raises(BudgetError, match=r"a still image \(.*\), not a video \(setting allow_still_images\)"):
        classifier.classify(png())
    allowed = squeezetime.load(squeezetime.DEMO, budget=DecodeBudget(allow_still_images=True))
    assert allowed.clips(png()).shape == (1, 16, 224, 224, 3)  # one frame, looped as mmaction2 does
    assert isinstance(BudgetError("x"), squeezetime.VideoError)


@pytest.mark.slow
def test_ordinary_videos_are_within_the_default_budget(classifier, demo_videos):
    path, truth = demo_videos[0]
    assert classifier.classify(path, views="10x3", topk=1)[0][0] == truth


def test_server_settings_make_the_same_budget():
    from squeezetime.serving.requests import decode_budget

    budget = decode_budget({"max_pixels": "1000", "max_frames": 7, "max_decode_seconds": "2.5",
                            "allow_still_images": "true", "max_decoded_frames": "90", "max_duration": "60",
                            "max_pixel_rate": "1e6", "other": "x"})
    assert budget == DecodeBudget(max_pixels=1000, max_frames=7, max_seconds=2.5, allow_still_images=True,
                                  max_decoded_frames=90, max_duration=60.0, max_pixel_rate=1e6)
    assert decode_budget({}) == DecodeBudget()
