"""video -> clip: decoding videos made here, frame sampling as mmaction2, the official views, bad files."""
import io

import av
import numpy as np
import pytest

import squeezetime
from squeezetime import VideoError
from squeezetime.synthetic import encode_video, make_video
from squeezetime.video import count_frames, decode_frames, read_video, sample_frame_indices
from squeezetime.video.views import crop_boxes, get_view, resized_shape


def gradient_video(frames: int, height: int = 120, width: int = 160) -> np.ndarray:
    """Frame i is filled with value 3*i, so decoded frame order can be checked despite compression."""
    values = (np.arange(frames) * 3 % 256).astype(np.uint8)
    return np.broadcast_to(values[:, None, None, None], (frames, height, width, 3)).copy()


@pytest.mark.parametrize("container", ["mp4", "avi", "webm", "mkv"])
def test_decode_every_container_from_bytes_and_path(container, tmp_path):
    frames = gradient_video(20)
    blob = encode_video(frames, container)
    path = tmp_path / f"v.{container}"
    path.write_bytes(blob)
    for source in (blob, path, str(path)):
        decoded = read_video(source)
        assert decoded.shape == (20, 120, 160, 3) and decoded.dtype == np.uint8
        assert np.abs(decoded[:, 60, 80, 0].astype(int) - frames[:, 60, 80, 0]).max() <= 4
    assert count_frames(blob) == 20


def test_decoding_keeps_only_wanted_frames():
    blob = encode_video(gradient_video(30), "mp4")
    frames, total = decode_frames(blob, wanted=[0, 7, 29])
    assert total == 30 and sorted(frames) == [0, 7, 29]
    assert abs(int(frames[7][0, 0, 0]) - 21) <= 4


def test_sampling_matches_mmaction2_test_mode():
    # one clip: centred, span (16-1)*4+1 = 61 frames
    assert sample_frame_indices(100, 16, 4, 1).tolist() == [list(range(19, 19 + 61, 4))]
    # ten clips: offsets round(i * max_offset / 9)
    ten = sample_frame_indices(100, 16, 4, 10)
    assert ten[:, 0].tolist() == [int(np.round(i * 39 / 9)) for i in range(10)]
    # shorter than a clip: indices loop
    short = sample_frame_indices(10, 16, 4, 1)
    assert short.tolist() == [[(4 * i) % 10 for i in range(16)]]
    with pytest.raises(ValueError):
        sample_frame_indices(0)


def test_views_geometry():
    assert resized_shape(240, 320, 256) == (256, 341)
    assert resized_shape(480, 270, 224) == (398, 224)
    assert crop_boxes(256, 341, get_view("1x1")) == [(16, 58)]
    assert crop_boxes(224, 298, get_view("10x3")) == [(0, 0), (0, 74), (0, 37)]
    assert crop_boxes(398, 224, get_view("10x3")) == [(0, 0), (174, 0), (87, 0)]
    with pytest.raises(squeezetime.InputError, match="unknown views"):
        get_view("5x5")


@pytest.mark.parametrize("views,count", [("1x1", 1), ("10x3", 30)])
def test_sample_clips_shapes(views, count):
    clips = squeezetime.sample_clips(make_video(0, seed=1), views)
    assert clips.shape == (count, 16, 224, 224, 3) and clips.dtype == np.uint8


def test_short_video_loops_frames():
    blob = encode_video(gradient_video(10, 240, 320), "mp4")
    clip = squeezetime.sample_clips(blob)[0]
    expected = np.array([(4 * i) % 10 * 3 for i in range(16)])
    assert np.abs(clip[:, 100, 100, 0].astype(int) - expected).max() <= 4


def test_portrait_video():
    blob = encode_video(gradient_video(70, 320, 240), "mp4")
    assert squeezetime.sample_clips(blob, "10x3").shape == (30, 16, 224, 224, 3)


def audio_only() -> bytes:
    buffer = io.BytesIO()
    with av.open(buffer, mode="w", format="mp4") as out:
        stream = out.add_stream("aac", rate=16000)
        samples = np.zeros((1, 1024), np.float32)
        for _ in range(4):
            frame = av.AudioFrame.from_ndarray(samples, format="fltp", layout="mono")
            frame.sample_rate = 16000
            out.mux(stream.encode(frame))
        out.mux(stream.encode())
    return buffer.getvalue()


def zero_frame_video(tmp_path) -> bytes:
    """A Matroska file with a video stream header and no frames."""
    path = tmp_path / "zero.mkv"
    with av.open(str(path), mode="w", format="matroska") as out:
        stream = out.add_stream("libx264", rate=25)
        stream.width, stream.height, stream.pix_fmt = 64, 64, "yuv420p"
        out.start_encoding()
    return path.read_bytes()


@pytest.mark.parametrize("name,blob,message", [
    ("empty", b"", "empty"),
    ("garbage", b"\x00\x01 this is not a video " * 50, "not a readable video"),
    ("audio-only", None, "no video stream"),
    ("zero-frame", None, "no video frames|no decodable|not a readable video"),
    ("truncated", None, "corrupt|truncated|not a readable|no decodable|no frames"),
])
def test_bad_videos_raise_video_error(name, blob, message, tmp_path):
    if name == "audio-only":
        blob = audio_only()
    elif name == "zero-frame":
        blob = zero_frame_video(tmp_path)
    elif name == "truncated":
        blob = make_video(2, seed=3)[:3000]
    with pytest.raises(VideoError, match=message):
        squeezetime.sample_clips(blob)
    path = tmp_path / "bad.mp4"
    path.write_bytes(blob)
    with pytest.raises(VideoError):
        squeezetime.sample_clips(path)


def test_missing_file_is_a_video_error(tmp_path):
    with pytest.raises(VideoError, match="no such file"):
        squeezetime.sample_clips(tmp_path / "absent.mp4")
