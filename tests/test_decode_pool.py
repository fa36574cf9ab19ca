"""Decoding off the request path: squeezetime_video decodes in a thread pool (cheapest waiting video first) and
answers each request as soon as it is done, so a cheap request is not held up by expensive ones in flight; a
request the client cancels (gRPC deadline or cancel) stops its decode. Unit tests of the pieces, then a real
tritonserver (the session fixture of test_triton_server)."""
from __future__ import annotations

import io
import threading
import time

import numpy as np
import pytest

from squeezetime.bench.prometheus import scrape, wait_for_metric

pytestmark = pytest.mark.timeout(600)


def expensive_video(frames: int = 480, height: int = 720, width: int = 1280) -> bytes:
    """A long 720p H.264 video (~0.5 MB: under the test server's upload limit), cheap to make: a shifting
    blocky pattern encoded with the fastest preset."""
    import av

    rng = np.random.default_rng(0)
    tile = np.repeat(np.repeat(rng.integers(0, 256, (height // 16, width // 16, 3), dtype=np.uint8), 16, 0), 16, 1)
    buf = io.BytesIO()
    with av.open(buf, mode="w", format="mp4") as out:
        stream = out.add_stream("libx264", rate=25)
        stream.height, stream.width, stream.pix_fmt = height, width, "yuv420p"
        stream.options = {"preset": "ultrafast", "crf": "30"}
        for i in range(frames):
            out.mux(stream.encode(av.VideoFrame.from_ndarray(np.roll(tile, 8 * i, axis=1), format="rgb24")))
        out.mux(stream.encode())
    return buf.getvalue()


# -- the pieces, no server -----------------------------------------------------------------------------------------
def test_decode_pool_takes_the_cheapest_waiting_job_first():
    from squeezetime.serving.triton.decode_pool import DecodePool

    pool = DecodePool(1)
    try:
        gate = threading.Event()
        busy = pool.submit(0, gate.wait, 30)  # holds the only thread while the others queue
        order = []
        jobs = [pool.submit(cost, order.append, cost) for cost in (50.0, 1.0, 20.0)]
        gate.set()
        busy.result(timeout=30)
        for job in jobs:
            job.result(timeout=30)
        assert order == [1.0, 20.0, 50.0]
        with pytest.raises(ZeroDivisionError):
            pool.submit(0, lambda: 1 / 0).result(timeout=30)
    finally:
        pool.shutdown()
    with pytest.raises(RuntimeError):
        pool.submit(0, print)


def test_decode_cost_grows_with_bytes_and_clips():
    from squeezetime.serving.triton.decode_pool import decode_cost
    from squeezetime.video import get_view

    assert decode_cost(b"x" * 1000, get_view("10x3")) == 30 * decode_cost(b"x" * 1000, get_view("1x1"))
    assert decode_cost(b"x" * 2000, get_view("1x1")) == 2 * decode_cost(b"x" * 1000, get_view("1x1"))


def test_should_stop_stops_a_decode_early(demo_videos):
    import squeezetime
    from squeezetime.video.decode import DecodeCancelled, stop_when

    classifier = squeezetime.Classifier(None, squeezetime.demo_model().data_config, ["x"])
    path = demo_videos[0][0]
    asked = []
    with pytest.raises(DecodeCancelled, match="cancelled"):
        classifier.clips(path, should_stop=lambda: asked.append(1) or len(asked) > 1)
    assert len(asked) == 2  # stopped at the second question, not after the whole video
    assert classifier.clips(path, should_stop=lambda: False).shape[0] == 1
    with stop_when(lambda: True):  # an enclosing check holds for calls without their own
        with pytest.raises(DecodeCancelled):
            classifier.clips(path)


# -- a real tritonserver -------------------------------------------------------------------------------------------
def _video_inputs(video: bytes, views: str):
    import tritonclient.grpc as grpcclient

    inputs = [grpcclient.InferInput("VIDEO", [1, 1], "BYTES"), grpcclient.InferInput("VIEWS", [1, 1], "BYTES")]
    inputs[0].set_data_from_numpy(np.array([[video]], dtype=np.object_))
    inputs[1].set_data_from_numpy(np.array([[views.encode()]], dtype=np.object_))
    return inputs


def _classify_seconds(url: str, video: bytes, views: str) -> float:
    import tritonclient.grpc as grpcclient

    client = grpcclient.InferenceServerClient(url)
    try:
        started = time.perf_counter()
        result = client.infer("squeezetime_video", _video_inputs(video, views), client_timeout=300)
        elapsed = time.perf_counter() - started
        assert result.as_numpy("LABELS").size > 0
        return elapsed
    finally:
        client.close()


@pytest.fixture(scope="module")
def big_video():
    return expensive_video()


QUEUED = 'squeezetime_stage_seconds_count{model="squeezetime_video",stage="queue"}'      # decodes started
DECODED = 'squeezetime_stage_seconds_count{model="squeezetime_video",stage="decode"}'    # decodes ended
DECODE_SECONDS = 'squeezetime_stage_seconds_sum{model="squeezetime_video",stage="decode"}'
CANCELLED = 'squeezetime_rejections_total{model="squeezetime_video",reason="cancelled"}'


def test_a_cheap_request_is_answered_while_expensive_ones_decode(triton, big_video, demo_videos):
    """Decoding is off the request path, in a pool: with two expensive decodes running, a cheap request is decoded
    and answered beside them. Ordered by the server's counters, not by sleeps: the cheap request is sent once both
    expensive decodes have started (queue-stage count), and when its answer arrives no expensive decode has ended
    (decode-stage count). An expensive decode (30 clips of 480 frames of 720p, typically 1 to 2 s) lasts over 10x
    a cheap 1x1 request (typically 0.1 s), on a loaded machine too. How much the cheap request slows down beside
    them is a timing: benchmarks/bench_refusal.py measures it."""
    cheap = open(demo_videos[1][0], "rb").read()
    _classify_seconds(triton.grpc_url, cheap, "1x1")  # connection and caches
    before = scrape(triton.metrics_url)
    expensive = [threading.Thread(target=_classify_seconds, args=(triton.grpc_url, big_video, "10x3"), daemon=True)
                 for _ in range(2)]
    for thread in expensive:
        thread.start()
    wait_for_metric(triton.metrics_url, QUEUED, before.get(QUEUED, 0) + 2)  # both hold a decode thread
    _classify_seconds(triton.grpc_url, cheap, "1x1")
    answered = scrape(triton.metrics_url)
    for thread in expensive:
        thread.join(timeout=300)
    assert answered[DECODED] == before[DECODED] + 1, "the cheap request waited for an expensive decode to end"
    assert scrape(triton.metrics_url)[DECODED] == before[DECODED] + 3


def test_a_cancelled_request_stops_its_decode(triton, big_video):
    """A request the client cancels while it decodes stops decoding: cancelled as soon as its decode has started
    (queue-stage count), its decode ends after the cancel check's next look (every 16 frames, at most every 0.05 s):
    measured 0.05 s of a 0.78 s full decode. The bound, half the full decode, is 10x that typical value."""
    import tritonclient.grpc as grpcclient

    before = scrape(triton.metrics_url)
    _classify_seconds(triton.grpc_url, big_video, "10x3")
    mid = scrape(triton.metrics_url)
    full_decode = mid[DECODE_SECONDS] - before[DECODE_SECONDS]

    client = grpcclient.InferenceServerClient(triton.grpc_url)
    try:
        outcome = []
        call = client.async_infer("squeezetime_video", _video_inputs(big_video, "10x3"),
                                  callback=lambda result, error: outcome.append(error), client_timeout=300)
        wait_for_metric(triton.metrics_url, QUEUED, mid[QUEUED] + 1)
        call.cancel()
        after = wait_for_metric(triton.metrics_url, CANCELLED, mid.get(CANCELLED, 0) + 1)
    finally:
        client.close()
    after = wait_for_metric(triton.metrics_url, DECODED, mid[DECODED] + 1)
    stopped_decode = after[DECODE_SECONDS] - mid[DECODE_SECONDS]
    print(f"\nfull decode {full_decode:.2f} s; cancelled once decoding: decode ran {stopped_decode:.2f} s")
    assert stopped_decode < 0.5 * full_decode, (stopped_decode, full_decode)
