"""A real TorchServe 0.12 serving the demo model's .mar on loopback: REST, gRPC, batching, bad inputs, 413.

One server for the module (the ``torchserve`` fixture of conftest.py: own temp dirs, free ports,
READY workers, always stopped). Speed is never asserted.
"""
from __future__ import annotations

import io
import json
import time
import urllib.request
from pathlib import Path

import numpy as np
import pytest

import squeezetime
from support.torchserve import BATCH_SIZE, concurrently, post_headers_only

pytestmark = pytest.mark.timeout(600)
ATOL = 1e-4  # same float32 model; only the batch composition differs


@pytest.fixture(scope="module")
def rest(torchserve):
    from squeezetime.serving.torchserve.client import RestClient

    return RestClient(torchserve.inference_url)


@pytest.fixture(scope="module")
def grpc_client(torchserve, grpc_stub_dir):
    from squeezetime.serving.torchserve.client import GrpcClient

    with GrpcClient(torchserve.grpc_address, stub_dir=grpc_stub_dir) as client:
        yield client


@pytest.fixture(scope="module")
def one_per_class(demo_videos):
    seen, out = set(), []
    for path, truth in demo_videos:
        if truth not in seen:
            seen.add(truth)
            out.append((path, truth))
    return out


@pytest.fixture(scope="module")
def worker_pid(torchserve):
    return worker_pids(torchserve)


def worker_pids(info) -> list:
    with urllib.request.urlopen(f"{info.management_url}/models/squeezetime", timeout=10) as r:
        return [w["pid"] for entry in json.loads(r.read()) for w in entry["workers"] if w["status"] == "READY"]


def in_process(model, video, views="1x1", topk=8):
    return squeezetime.predict(model, video, views=views, topk=topk)


def assert_same(served: list[dict], expected: list[tuple[str, float]]):
    assert [p["label"] for p in served] == [label for label, _ in expected]
    np.testing.assert_allclose([p["probability"] for p in served], [p for _, p in expected], atol=ATOL)


def npy(array) -> bytes:
    buf = io.BytesIO()
    np.save(buf, array)
    return buf.getvalue()


def test_rest_demo_videos_match_in_process(torchserve, rest, demo_videos, demo_model, worker_pid):
    assert worker_pid, "no READY worker"
    for path, truth in demo_videos:
        served = rest.predict(path, topk=8)
        assert served[0]["label"] == truth, f"{Path(path).name}: {served[0]} (truth {truth})"
        assert_same(served, in_process(demo_model, path))


def test_grpc_demo_videos_match_in_process(grpc_client, one_per_class, demo_model):
    assert grpc_client.health() == "Healthy"
    for path, truth in one_per_class:
        served = grpc_client.predict(path, topk=8)
        assert served[0]["label"] == truth
        assert_same(served, in_process(demo_model, path))


def test_ten_by_three_views_and_topk(rest, grpc_client, one_per_class, demo_model):
    path, truth = one_per_class[3]
    expected = in_process(demo_model, path, views="10x3", topk=3)
    assert_same(rest.predict(path, views="10x3", topk=3), expected)
    assert_same(grpc_client.predict(path, views="10x3", topk=3), expected)
    assert expected[0][0] == truth


def test_npy_clips_json_and_multipart(torchserve, rest, one_per_class, demo_model):
    import base64

    path, truth = one_per_class[1]
    clips = squeezetime.sample_clips(path, "1x1")
    expected = in_process(demo_model, clips, topk=2)
    assert_same(rest.predict(clips[0], topk=2), expected)  # (16, 224, 224, 3)
    assert_same(rest.predict(clips, topk=2), expected)  # (N, 16, 224, 224, 3)
    video = Path(path).read_bytes()
    body = json.dumps({"video": base64.b64encode(video).decode(), "topk": 2}).encode()
    req = urllib.request.Request(f"{torchserve.inference_url}/predictions/squeezetime", data=body,
                                 headers={"Content-Type": "application/json"}, method="POST")
    with urllib.request.urlopen(req, timeout=120) as r:
        assert_same(json.loads(r.read()), in_process(demo_model, path, topk=2))
    boundary = "squeezetimeboundary"
    parts = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"data\"; filename=\"v.mp4\"\r\n"
             f"Content-Type: application/octet-stream\r\n\r\n").encode() + video + (
        f"\r\n--{boundary}\r\nContent-Disposition: form-data; name=\"topk\"\r\n\r\n2\r\n--{boundary}--\r\n").encode()
    req = urllib.request.Request(f"{torchserve.inference_url}/predictions/squeezetime", data=parts,
                                 headers={"Content-Type": f"multipart/form-data; boundary={boundary}"}, method="POST")
    with urllib.request.urlopen(req, timeout=120) as r:
        served = json.loads(r.read())
    assert_same(served, in_process(demo_model, path, topk=2))
    assert served[0]["label"] == truth


def assert_batches_add_up(batch_sizes: list[int]) -> None:
    """Each response names the size of the batch it was in: k requests said k for every batch of k. Which batches
    concurrent requests form depends on timing, so sizes are checked for consistency, never for being > 1."""
    assert all(1 <= k <= BATCH_SIZE for k in batch_sizes), batch_sizes
    assert all(batch_sizes.count(k) % k == 0 for k in set(batch_sizes)), batch_sizes


def test_eight_concurrent_requests_are_answered_in_batches(torchserve, rest, demo_videos, demo_model):
    videos = demo_videos[:8]
    log = Path(torchserve.log_dir) / "model_log.log"

    def logged_requests() -> int:
        return sum(int(line.split("requests=")[1].split()[0]) for line in log.read_text().splitlines()
                   if "SQUEEZETIME_BATCH" in line)

    before = logged_requests()
    results = concurrently([lambda p=p: rest.predict_raw(p, topk=1) for p, _ in videos])
    batch_sizes = []
    for (path, truth), (status, body, headers) in zip(videos, results):
        assert status == 200, body
        assert json.loads(body)[0]["label"] == truth
        batch_sizes.append(int(headers["X-SqueezeTime-Batch-Requests"]))
    assert_batches_add_up(batch_sizes)
    # The worker logs one line per batch; its stdout reaches model_log.log through the frontend's log thread
    # (typically well under 1 s): wait for all 8 requests to be logged, up to 60 s.
    deadline = time.monotonic() + 60
    while logged_requests() < before + 8 and time.monotonic() < deadline:
        time.sleep(0.2)
    assert logged_requests() >= before + 8  # (>=: an earlier test's line may be flushed meanwhile)


def test_logs_are_sized_for_serving(torchserve, rest, one_per_class):
    """The packaged log4j2.xml is in force: per-request DEBUG chatter (TorchServe's default, ~30 lines a request,
    copied to stdout) is off; one access-log line per request and the worker's batch line stay."""
    logs = Path(torchserve.log_dir)
    before = len((logs / "access_log.log").read_text().splitlines())
    for path, _ in one_per_class[:3]:
        assert rest.predict_raw(path, topk=1)[0] == 200
    deadline = time.monotonic() + 60  # log4j flushes on its own thread (typically within 1 s): wait, up to 60 s
    while len((logs / "access_log.log").read_text().splitlines()) < before + 3 and time.monotonic() < deadline:
        time.sleep(0.2)
    assert len((logs / "access_log.log").read_text().splitlines()) >= before + 3
    ts_log = (logs / "ts_log.log").read_text()
    assert "[DEBUG]" not in ts_log and "Sending response for jobId" not in ts_log and "result=[METRICS]" not in ts_log
    assert "SQUEEZETIME_BATCH" in (logs / "model_log.log").read_text()
    assert "[INFO ]" not in (logs / "console.log").read_text()


BAD = {
    "garbage bytes": (b"\x00garbage, not a video" * 50, {}, "not a readable video"),
    "empty body": (b"", {}, "empty request body"),
    "wrong clip shape": (npy(np.zeros((8, 224, 224, 3), np.uint8)), {}, "clips must have 16 frames"),
    "wrong clip dtype": (npy(np.zeros((16, 224, 224, 3), np.float32)), {}, "uint8"),
    "unknown view": (None, {"views": "5x5"}, "unknown views"),
    "bad topk": (None, {"topk": "zero"}, "topk must be"),
}


@pytest.mark.parametrize("case", list(BAD))
def test_bad_input_is_400_and_batch_neighbour_succeeds(rest, one_per_class, case, worker_pid):
    payload, options, message = BAD[case]
    good_path, truth = one_per_class[0]
    bad = payload if payload is not None else Path(one_per_class[2][0]).read_bytes()
    (bad_status, bad_body, bad_headers), (good_status, good_body, good_headers) = concurrently([
        lambda: rest.predict_raw(bad, **options), lambda: rest.predict_raw(good_path, topk=1)])
    assert bad_status == 400, bad_body
    error = json.loads(bad_body)
    assert error["code"] == 400 and message in error["message"], error
    assert good_status == 200, good_body
    assert json.loads(good_body)[0]["label"] == truth


def test_bad_and_good_requests_in_one_batch(rest, one_per_class, worker_pid):
    """All bad cases at once beside good ones: they land in shared batches, and only the bad ones fail."""
    good_path, truth = one_per_class[0]
    calls = [lambda p=p, o=o: rest.predict_raw(p if p is not None else good_path, **o)
             for p, o, _ in BAD.values()] + [lambda: rest.predict_raw(good_path, topk=1)] * 2
    results = concurrently(calls)
    statuses = [status for status, _, _ in results]
    assert statuses == [400] * len(BAD) + [200, 200], statuses
    assert_batches_add_up([int(headers.get("X-SqueezeTime-Batch-Requests", 1)) for _, _, headers in results])
    assert all(json.loads(body)[0]["label"] == truth for _, body, _ in results[len(BAD):])


@pytest.mark.parametrize("views", ["1x1", "10x3"])
def test_a_long_still_video_is_400(rest, long_still_video, views):
    """Issue 18's upload, 200,000 identical frames: refused from the frames the views decode (test_budget counts
    them), answered 400 naming the setting."""
    status, body, _ = rest.predict_raw(Path(long_still_video).read_bytes(), views=views)
    assert status == 400, body
    message = json.loads(body)["message"]
    assert "a still image (200000 frames" in message and "allow_still_images" in message, message


def test_grpc_bad_input(grpc_client):
    from squeezetime.serving.torchserve.client import PredictionError

    with pytest.raises(PredictionError) as err:
        grpc_client.predict(b"garbage")
    assert err.value.status == 400 and "not a readable video" in err.value.message


def test_oversized_upload_is_413(torchserve, rest):
    from squeezetime.serving.torchserve.config import DEFAULT_MAX_REQUEST_SIZE

    limit = torchserve.extra["max_request_size"]
    assert limit == DEFAULT_MAX_REQUEST_SIZE == 64 * 1024 * 1024  # the limit docs/torchserve.md states
    assert f"max_request_size={limit}" in (Path(torchserve.run_dir) / "config.properties").read_text()
    port = torchserve.ports["inference"]
    status, line = post_headers_only("127.0.0.1", port, "/predictions/squeezetime", limit + 1)
    assert status == 413, line
    status, line = post_headers_only("127.0.0.1", port, "/predictions/squeezetime", limit // 2)
    assert status == 100, line  # under the limit the server asks for the body


def test_server_healthy_after_everything(torchserve, rest, grpc_client, one_per_class, worker_pid):
    assert rest.health() == "Healthy"
    assert grpc_client.health() == "Healthy"
    assert worker_pids(torchserve) == worker_pid, "the worker was restarted"
    path, truth = one_per_class[-1]
    assert rest.predict(path, topk=1)[0]["label"] == truth


def test_token_authorisation_for_production(tmp_path, one_per_class, grpc_stub_dir):
    """With token auth on (the production setting), requests without the inference key are refused over
    REST and gRPC, and the key from key_file.json is accepted."""
    from squeezetime.serving.torchserve import server
    from squeezetime.serving.torchserve.archive import ArchiveOptions, build_archive
    from squeezetime.serving.torchserve.client import GrpcClient, PredictionError, RestClient

    store = tmp_path / "store"
    build_archive(store, options=ArchiveOptions(batch_size=1, workers=1, threads=2))
    info = server.start(store, run_dir=tmp_path / "run", ports=server.free_ports(), token_auth=True, timeout=240)
    try:
        key = info.keys()["inference"]
        assert key
        path, truth = one_per_class[0]
        status, body, _ = RestClient(info.inference_url).predict_raw(path, topk=1)
        assert status in (400, 401) and b"Token Authorization failed" in body, (status, body)
        assert RestClient(info.inference_url, token=key).predict(path, topk=1)[0]["label"] == truth
        with GrpcClient(info.grpc_address, stub_dir=grpc_stub_dir) as anonymous:
            with pytest.raises(PredictionError, match="PERMISSION_DENIED: Token Authorization failed"):
                anonymous.predict(path, topk=1)
        with GrpcClient(info.grpc_address, stub_dir=grpc_stub_dir, token=key) as client:
            assert client.predict(path, topk=1)[0]["label"] == truth
    finally:
        server.stop(info.run_dir, timeout=60)
