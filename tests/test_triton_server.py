"""A real tritonserver (the nvidia-pytriton binary) on loopback: gRPC/HTTP, equality with the in-process model,
concurrency and dynamic batching, bad inputs answered with INVALID_ARGUMENT, system shared memory, the CLI."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
import torch

from support.triton import MAX_VIDEO_BYTES, require_tritonserver, server_processes, shm_regions, video_inputs

import squeezetime
from squeezetime.bench.prometheus import scrape
from squeezetime.predict import label_names

pytestmark = pytest.mark.timeout(600)
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# The server runs the optimised path (BN folded, oneDNN kernels chosen per batch size), the reference runs
# eager: float32 rounding differs by ~1e-6 relative in the logits (within the golden tolerance), which a
# peaked softmax turns into up to ~1e-5 absolute. So probabilities agree to 1e-4 relative / 1e-5 absolute.
ATOL = 1e-5
RTOL = 1e-4


@pytest.fixture(scope="module")
def client(triton):  # triton, served_model: tests/conftest.py
    from squeezetime.triton import TritonClient

    with TritonClient(triton.grpc_url, timeout=120) as c:
        yield c


def random_clips(n: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (n, 16, 224, 224, 3), dtype=np.uint8)


def in_process(model, clips: np.ndarray):
    with torch.inference_mode():
        logits = model(squeezetime.normalize_clip(clips)).float()
    return logits.numpy(), logits.softmax(1).numpy()


def assert_same_prediction(served, expected):
    assert [label for label, _ in served] == [label for label, _ in expected]
    np.testing.assert_allclose([p for _, p in served], [p for _, p in expected], atol=ATOL, rtol=RTOL)


# -- health and metadata ---------------------------------------------------------------------------------------
def test_ready_and_metadata_grpc_and_http(triton, served_model):
    import tritonclient.grpc as grpcclient
    import tritonclient.http as httpclient

    names = label_names(served_model)
    g = grpcclient.InferenceServerClient(triton.grpc_url)
    h = httpclient.InferenceServerClient(triton.http_url)
    for c in (g, h):
        assert c.is_server_live() and c.is_server_ready()
        assert c.is_model_ready("squeezetime") and c.is_model_ready("squeezetime_video")
    meta = g.get_model_metadata("squeezetime", as_json=True)
    assert meta["inputs"][0]["name"] == "CLIP" and meta["inputs"][0]["datatype"] == "UINT8"
    assert meta["inputs"][0]["shape"] == ["-1", "16", "224", "224", "3"]
    assert {o["name"]: o["shape"] for o in meta["outputs"]} == {"LOGITS": ["-1", str(len(names))],
                                                                "PROBS": ["-1", str(len(names))]}
    meta = h.get_model_metadata("squeezetime_video")
    assert {i["name"]: i["datatype"] for i in meta["inputs"]} == {"VIDEO": "BYTES", "VIEWS": "BYTES", "TOPK": "INT32"}
    assert {o["name"]: o["datatype"] for o in meta["outputs"]} == {"LABELS": "BYTES", "SCORES": "FP32"}
    config = h.get_model_config("squeezetime")
    assert config["dynamic_batching"] is not None and config["instance_group"][0]["kind"] == "KIND_CPU"
    g.close()
    h.close()


# -- results equal the in-process model's ----------------------------------------------------------------------
def test_clips_equal_in_process(client, served_model):
    clips = random_clips(11)  # more than max_batch_size: the client splits
    served = client.classify_clips(clips)
    logits, probs = in_process(served_model, clips)
    assert served.logits.shape == logits.shape and served.logits.dtype == np.float32
    np.testing.assert_allclose(served.logits, logits, atol=1e-4, rtol=1e-5)
    np.testing.assert_allclose(served.probs, probs, atol=ATOL, rtol=RTOL)


def test_videos_equal_predict(client, served_model, demo_videos):
    for path, _ in demo_videos[::3]:
        assert_same_prediction(client.classify(path, topk=3), squeezetime.predict(served_model, path, topk=3))
    path = demo_videos[0][0]
    with open(path, "rb") as f:
        data = f.read()
    assert_same_prediction(client.classify(data, views="10x3", topk=8),
                           squeezetime.predict(served_model, path, views="10x3", topk=8))


def test_classification_extension_uses_labels(triton, served_model):
    import tritonclient.grpc as grpcclient

    c = grpcclient.InferenceServerClient(triton.grpc_url)
    inp = grpcclient.InferInput("CLIP", [1, 16, 224, 224, 3], "UINT8")
    inp.set_data_from_numpy(random_clips(1, seed=3))
    result = c.infer("squeezetime", [inp], outputs=[grpcclient.InferRequestedOutput("PROBS", class_count=2)])
    top = result.as_numpy("PROBS")[0]
    _, probs = in_process(served_model, random_clips(1, seed=3))
    best = int(probs[0].argmax())
    assert top[0].decode().split(":")[2] == label_names(served_model)[best]
    c.close()


# -- concurrency and dynamic batching ----------------------------------------------------------------------------
def test_concurrent_requests_are_all_answered_right(client, served_model, demo_videos):
    from squeezetime.triton import TritonClient

    videos = [path for path, _ in demo_videos][:16]
    expected = {p: squeezetime.predict(served_model, p, topk=2) for p in videos}
    clips = random_clips(16, seed=5)
    _, probs = in_process(served_model, clips)
    before = client.batch_sizes()

    def one_video(path):
        with TritonClient(client.url, timeout=300) as c:
            return path, c.classify(path, topk=2)

    def one_clip(i):
        with TritonClient(client.url, timeout=300) as c:
            return i, c.classify_clips(clips[i])

    with ThreadPoolExecutor(32) as pool:
        video_jobs = [pool.submit(one_video, p) for p in videos]
        clip_jobs = [pool.submit(one_clip, i) for i in range(16)]
        for job in video_jobs:
            path, top = job.result()
            assert_same_prediction(top, expected[path])
        for job in clip_jobs:
            i, scores = job.result()
            np.testing.assert_allclose(scores.probs[0], probs[i], atol=ATOL, rtol=RTOL)
    after = client.batch_sizes()
    # Every clip went through the clip model's dynamic batcher, whatever batches it formed: 16 clip requests and the
    # 16 videos' 1x1 clips. Whether concurrent requests met in one batch depends on timing, so it is not asserted
    # here: benchmarks/bench_refusal.py prints the batch sizes a concurrent load produced.
    clips_run = sum(size * (after.get(size, 0) - before.get(size, 0)) for size in after)
    assert clips_run == 16 + 16, (before, after)


# -- untrusted requests ----------------------------------------------------------------------------------------
def _raw_infer(url, model, inputs):
    import tritonclient.grpc as grpcclient
    from tritonclient.utils import InferenceServerException

    c = grpcclient.InferenceServerClient(url)
    try:
        c.infer(model, inputs, client_timeout=120)
        return None
    except InferenceServerException as e:
        return e.status(), e.message()
    finally:
        c.close()


def _bad_requests(client):
    import tritonclient.grpc as grpcclient

    def video(data, views=None, topk=None):
        return "squeezetime_video", video_inputs(data, views, topk)

    def clip(array, dtype="UINT8"):
        inp = grpcclient.InferInput("CLIP", list(array.shape), dtype)
        inp.set_data_from_numpy(array)
        return "squeezetime", [inp]

    from squeezetime.synthetic import make_video
    good = make_video(0, seed=5, container="mp4")
    return {
        "corrupt video": (video(b"\x00\x00\x00\x18ftypmp42" + os.urandom(5000)), "video"),
        "truncated video": (video(good[: len(good) // 3]), ""),
        "empty video": (video(b""), "empty"),
        "oversized video": (video(good + b"\x00" * MAX_VIDEO_BYTES), "limit"),
        "unknown views": (video(good, views=b"3x3"), "VIEWS"),
        "non-utf8 views": (video(good, views=b"\xff\xfe"), "VIEWS"),
        "topk 0": (video(good, topk=0), "TOPK"),
        "float clip": (clip(np.zeros((1, 16, 224, 224, 3), np.float32), "FP32"), ""),
        "short clip": (clip(np.zeros((1, 8, 224, 224, 3), np.uint8)), ""),
        "small crop": (clip(np.zeros((1, 16, 112, 112, 3), np.uint8)), ""),
    }


def test_bad_inputs_are_invalid_argument_while_good_requests_succeed(client, triton, served_model, demo_videos):
    from squeezetime.triton import TritonClient

    bad = _bad_requests(client)
    good_path = demo_videos[1][0]
    expected = squeezetime.predict(served_model, good_path, topk=3)

    def good(_):
        with TritonClient(triton.grpc_url, timeout=300) as c:
            return c.classify(good_path, topk=3)

    with ThreadPoolExecutor(16) as pool:
        goods = [pool.submit(good, i) for i in range(8)]
        bads = {name: pool.submit(_raw_infer, triton.grpc_url, model, inputs)
                for name, ((model, inputs), _) in bad.items()}
        for name, job in bads.items():
            outcome = job.result()
            assert outcome is not None, f"{name}: accepted"
            status, message = outcome
            assert status == "StatusCode.INVALID_ARGUMENT", f"{name}: {status} {message}"
            assert bad[name][1] in message, f"{name}: unclear message {message!r}"
        for job in goods:
            assert_same_prediction(job.result(), expected)
    assert client.is_ready()
    # the client API raises TritonRequestError with the status
    from squeezetime.triton import TritonRequestError
    with pytest.raises(TritonRequestError, match="not a readable video") as info:
        client.classify(b"definitely not a video")
    assert info.value.status == "StatusCode.INVALID_ARGUMENT"


@pytest.mark.parametrize("views", ["1x1", "10x3"])
def test_a_long_still_video_is_invalid_argument_and_its_decode_counted(triton, long_still_video, views):
    """Issue 18's upload, 200,000 identical frames: refused from the frames the views decode (in process it costs
    them only: test_budget), and the refusal's decode seconds are in the decode stage like a served request's."""
    decode = 'squeezetime_stage_seconds_count{model="squeezetime_video",stage="decode"}'
    still = 'squeezetime_rejections_total{model="squeezetime_video",reason="still_image"}'
    before = scrape(triton.metrics_url)
    with open(long_still_video, "rb") as f:
        outcome = _raw_infer(triton.grpc_url, "squeezetime_video", video_inputs(f.read(), views))
    assert outcome is not None and outcome[0] == "StatusCode.INVALID_ARGUMENT", outcome
    assert "a still image (200000 frames" in outcome[1] and "allow_still_images" in outcome[1], outcome
    after = scrape(triton.metrics_url)
    assert after[decode] == before.get(decode, 0) + 1 and after[still] == before.get(still, 0) + 1


# -- system shared memory ----------------------------------------------------------------------------------------
def test_clip_through_system_shared_memory(client, served_model):
    clips = random_clips(3, seed=9)
    via_shm = client.classify_clips(clips, shared_memory=True)
    _, probs = in_process(served_model, clips)
    np.testing.assert_allclose(via_shm.probs, probs, atol=ATOL, rtol=RTOL)
    status = client.client.get_system_shared_memory_status(as_json=True)
    assert not status.get("regions"), "the client left a registered region"
    assert not [p for p in os.listdir("/dev/shm") if p.startswith("squeezetime_")]


# -- command line ------------------------------------------------------------------------------------------------
def cli(*args, timeout=300, **kwargs):
    return subprocess.run([sys.executable, "-m", "squeezetime.cli", *args], capture_output=True, text=True,
                          timeout=timeout, cwd=ROOT, **kwargs)


def test_cli_client(triton, served_model, demo_videos):
    path = demo_videos[2][0]
    out = cli("client", path, "--url", triton.grpc_url, "--topk", "2", "--json")
    assert out.returncode == 0, out.stderr
    record = json.loads(out.stdout.strip().splitlines()[-1])
    expected = squeezetime.predict(served_model, path, topk=2)
    assert [r["label"] for r in record["labels"]] == [label for label, _ in expected]
    out = cli("client", path, os.devnull, "--url", triton.grpc_url)
    assert out.returncode == 1 and "empty" in out.stderr


def test_cli_client_server_down():
    from squeezetime.serving.triton import free_port

    start = time.monotonic()
    out = cli("client", "x.mp4", "--url", f"127.0.0.1:{free_port()}", "--timeout", "5")
    assert out.returncode == 2 and "is `squeezetime serve` running" in out.stderr, out.stderr
    assert time.monotonic() - start < 60  # it gives up (typically 3 to 6 s: imports and the 5 s timeout), never hangs


def test_cli_triton_repo_and_serve(tmp_path, served_model):
    require_tritonserver()
    from squeezetime.serving.triton import free_port

    ckpt = tmp_path / "model.pth"
    squeezetime.save_checkpoint(served_model, ckpt)
    out = cli("triton-repo", "--checkpoint", str(ckpt), "--out", str(tmp_path / "repo"), "--max-batch-size", "4")
    assert out.returncode == 0, out.stderr
    ports = [str(free_port()) for _ in range(3)]
    proc = subprocess.Popen([sys.executable, "-m", "squeezetime.cli", "serve", "--repo", str(tmp_path / "repo"),
                             "--grpc-port", ports[0], "--http-port", ports[1], "--metrics-port", ports[2]],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT)
    try:
        line = ""
        deadline = time.monotonic() + 240
        while "ready:" not in line and time.monotonic() < deadline and proc.poll() is None:
            line = proc.stdout.readline()
        assert "ready:" in line and f"127.0.0.1:{ports[0]}" in line, proc.stderr.read() if proc.poll() else line
        from squeezetime.triton import TritonClient
        with TritonClient(f"127.0.0.1:{ports[0]}") as c:
            assert c.max_batch_size() == 4 and c.is_ready()
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=60) == 0
        err = proc.stderr.read()
        assert "SIGTERM" in err and "tritonserver stopped" in err
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    # nothing left: no server answers on the port, no shm region of that server
    with TritonClient(f"127.0.0.1:{ports[0]}", timeout=5) as c:
        assert not c.is_ready()


def test_model_that_cannot_load_fails_fast_and_cleanly(tmp_path, served_model):
    require_tritonserver()
    from squeezetime.serving.triton import TritonServer, TritonServerError, write_repository

    repo = write_repository(tmp_path / "repo", served_model)
    (repo / "squeezetime" / "1" / "model.pth").write_bytes(b"not a checkpoint")
    server = TritonServer(repo, start_timeout=240)
    start = time.monotonic()
    with pytest.raises(TritonServerError, match="not a readable PyTorch checkpoint"):
        server.start()
    assert time.monotonic() - start < 240  # fails fast (typically 10 to 20 s), not after a hang; 240 s: start_timeout
    assert not server_processes(server) and not shm_regions(server.shm_prefix)
    # the wait also ends on tritonserver's last line, not only on its exit (it once hung for minutes after it)
    assert "failed to load all models" in (server.gave_up() or "")
    server.cleanup()


def test_cli_demo_via_triton(tmp_path):
    """`make demo`'s job: demo repository, real Triton, demo videos over gRPC, N/M with N = M, server stopped."""
    require_tritonserver()
    from squeezetime.synthetic.demo import demo_checkpoint_path

    if not os.path.exists(demo_checkpoint_path()):
        pytest.fail(f"the demo checkpoint {demo_checkpoint_path()} is missing")
    out = cli("demo", "--via", "triton", "--out", str(tmp_path / "videos"), "--per-class", "1")
    assert out.returncode == 0, out.stdout + out.stderr
    lines = out.stdout.strip().splitlines()
    assert lines[-1] == "demo: 8/8 videos classified correctly", out.stdout
    assert len(lines) == 9 and "Triton ready" in out.stderr and "tritonserver stopped" in out.stderr
