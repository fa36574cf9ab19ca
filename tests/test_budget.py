"""The decode budget: every video is untrusted, so pixels per frame, frames scanned and decode time are bounded,
and still images are not videos. Over budget is a ``BudgetError`` (a ``VideoError``) naming the setting."""
from __future__ import annotations

import io

import av
import numpy as np
import pytest

import squeezetime
from squeezetime.synthetic import encode_video, make_video
from squeezetime.video import BudgetError, DecodeBudget


def png(height: int = 256, width: int = 320) -> bytes:
    buf = io.BytesIO()
    with av.open(buf, mode="w", format="image2pipe") as out:
        stream = out.add_stream("png", rate=1)
        stream.height, stream.width, stream.pix_fmt = height, width, "rgb24"
        frame = np.random.default_rng(0).integers(0, 256, (height, width, 3), dtype=np.uint8)
        out.mux(stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")))
        out.mux(stream.encode())
    return buf.getvalue()


@pytest.fixture(scope="module")
def classifier():
    return squeezetime.load(squeezetime.DEMO)


@pytest.fixture(scope="module")
def video_8k() -> bytes:
    """Two different 7680x4320 frames (identical ones are a still image)."""
    return encode_video(np.zeros((2, 4320, 7680, 3), np.uint8) + np.array([0, 90], np.uint8)[:, None, None, None],
                        "mp4")


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


def test_decode_time(classifier):
    slow = squeezetime.Classifier(None, classifier.data_config, classifier.class_names,
                                  budget=DecodeBudget(max_seconds=1e-9))
    with pytest.raises(BudgetError, match=r"setting max_decode_seconds"):
        slow.clips(make_video(0, seed=1))


def test_a_still_image_is_not_a_video(classifier):
    with pytest.raises(BudgetError, match=r"a still image \(.*\), not a video \(setting allow_still_images\)"):
        classifier.classify(png())
    allowed = squeezetime.load(squeezetime.DEMO, budget=DecodeBudget(allow_still_images=True))
    assert allowed.clips(png()).shape == (1, 16, 224, 224, 3)  # one frame, looped as mmaction2 does
    assert isinstance(BudgetError("x"), squeezetime.VideoError)


def test_ordinary_videos_are_within_the_default_budget(classifier, demo_videos):
    path, truth = demo_videos[0]
    assert classifier.classify(path, views="10x3", topk=1)[0][0] == truth


def test_server_settings_make_the_same_budget():
    from squeezetime.serving.requests import decode_budget

    budget = decode_budget({"max_pixels": "1000", "max_frames": 7, "max_decode_seconds": "2.5",
                            "allow_still_images": "true", "other": "x"})
    assert budget == DecodeBudget(max_pixels=1000, max_frames=7, max_seconds=2.5, allow_still_images=True)
    assert decode_budget({}) == DecodeBudget()
