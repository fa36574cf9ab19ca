"""Admission control against real servers: an overload is answered at once (Triton UNAVAILABLE, TorchServe 503)
instead of queueing without end, the admitted requests succeed, and the server serves normally afterwards.

Each server is this module's own, with a tiny queue (2), one instance, no batching beyond 1: a burst of 24
concurrent requests (released together by a barrier) must then be partly refused. Every request has a client
timeout; every server is stopped in a `finally`. Speed is compared only within one burst (refused vs admitted),
never against absolute numbers. Also: Triton 2.51 has no flag that bounds a request's size (docs/triton.md,
"Upload size"); the test says so when a newer tritonserver brings one.
"""
from __future__ import annotations

import shutil
import statistics
import subprocess
import threading
from contextlib import contextmanager
import time

import numpy as np
import pytest

from support.torchserve import require_torchserve
from support.triton import model_for_tests, require_tritonserver, running

pytestmark = pytest.mark.timeout(300)
QUEUE = 2
BURST = 24


def burst(call, n: int = BURST, timeout: float = 150.0) -> list[tuple[str, float, str]]:
    """``call(i)`` from ``n`` threads released at once; [(outcome, seconds, detail)] in order. Bounded: a
    thread still running after ``timeout`` s fails the test."""
    barrier = threading.Barrier(n)
    results: list = [None] * n

    def run(i):
        barrier.wait(timeout=60)
        t0 = time.monotonic()
        try:
            outcome, detail = call(i)
        except Exception as e:  # noqa: BLE001 - reported in the assertion
            outcome, detail = "exception", repr(e)
        results[i] = (outcome, time.monotonic() - t0, detail)

    threads = [threading.Thread(target=run, args=(i,), daemon=True) for i in range(n)]
    for t in threads:
        t.start()
    deadline = time.monotonic() + timeout
    for t in threads:
        t.join(max(0.0, deadline - time.monotonic()))
    assert not any(t.is_alive() for t in threads), f"requests still hanging after {timeout} s"
    return results


def check_overload(results, ok: str, refused: str, refused_text: str) -> dict:
    """Every request admitted or refused (with ``refused_text``); some of each. Returns the figures (printed with
    -s): how much sooner the refused are answered is a timing, printed, not asserted."""
    other = [r for r in results if r[0] not in (ok, refused)]
    assert not other, f"neither admitted nor refused: {other}"
    admitted = [r[1] for r in results if r[0] == ok]
    rejected = [r for r in results if r[0] == refused]
    assert admitted, "nothing was admitted"
    assert rejected, f"nothing was refused with a queue of {QUEUE} and {len(results)} concurrent requests"
    assert all(refused_text in r[2] for r in rejected), rejected[:3]
    figures = {"admitted": len(admitted), "refused": len(rejected),
               "admitted_median_s": statistics.median(admitted),
               "refused_median_s": statistics.median(r[1] for r in rejected),
               "refused_max_s": max(r[1] for r in rejected)}
    print(f"overload figures: {figures}")
    # how much faster the refused are answered is printed, not asserted: on a cold, loaded machine the client's
    # own serialisation of the burst dominated both (CI once: refused 0.58 s vs admitted 0.70 s median)
    return figures


# -- Triton: dynamic batcher queue policy (max_queue_size) --------------------------------------------------------
@pytest.fixture(scope="module")
def small_queue_triton(tmp_path_factory):
    """The clip model alone, one instance, batches of 1, at most QUEUE requests waiting."""
    require_tritonserver()
    from squeezetime.serving.triton import RepoOptions, TritonServer, write_repository

    repo = write_repository(tmp_path_factory.mktemp("admission_repo"), model_for_tests(),
                            options=RepoOptions(max_batch_size=1, instances=1, max_queue_size=QUEUE, num_threads=1))
    shutil.rmtree(repo / "squeezetime_video")  # not needed here: faster start
    assert f"max_queue_size: {QUEUE}" in (repo / "squeezetime" / "config.pbtxt").read_text()
    with running(TritonServer(repo, start_timeout=240)) as server:
        yield server


def clip_request(grpcclient, clips):
    inp = grpcclient.InferInput("CLIP", list(clips.shape), "UINT8")
    inp.set_data_from_numpy(clips)
    return [inp]


@contextmanager
def clip_senders(server, n: int):
    """``n`` gRPC clients connected to ``server`` (before any burst: a burst measures the server, not channel
    set-up), each with one zero clip; yields (call(i) -> (outcome, detail), alone() -> rows of one more clip's
    PROBS, sent after the burst); always closed."""
    import tritonclient.grpc as grpcclient
    from tritonclient.utils import InferenceServerException

    clips = np.zeros((1, 16, 224, 224, 3), np.uint8)
    clients = [grpcclient.InferenceServerClient(server.grpc_url) for _ in range(n)]
    try:
        for c in clients:
            assert c.is_model_ready("squeezetime", client_timeout=30)
        inputs = [clip_request(grpcclient, clips) for _ in range(n)]

        def call(i):
            try:
                clients[i].infer("squeezetime", inputs[i], client_timeout=120)
                return "ok", ""
            except InferenceServerException as e:
                return str(e.status()), e.message() or ""

        def alone():
            out = clients[0].infer("squeezetime", clip_request(grpcclient, clips), client_timeout=120)
            return out.as_numpy("PROBS").shape[0]

        yield call, alone
    finally:
        for c in clients:
            c.close()


def overlapping_burst(call, refused: str, tries: int = 5) -> list:
    """A burst in which some requests were refused; up to ``tries`` bursts. Whether 24 requests overlap enough to
    fill a queue of 2 depends on how fast the clients send them against how fast the server answers: a burst that
    happened not to overlap proves nothing, so it is tried again rather than failed (as the queue-timeout test)."""
    for _ in range(tries):
        results = burst(call)
        if any(r[0] == refused for r in results):
            break
    return results


def test_triton_full_queue_is_unavailable_at_once(small_queue_triton):
    with clip_senders(small_queue_triton, BURST) as (call, alone):
        results = overlapping_burst(call, "StatusCode.UNAVAILABLE")
        check_overload(results, "ok", "StatusCode.UNAVAILABLE", "queue")
        assert alone() == 1  # and the server is fine: a normal request afterwards


def test_triton_has_no_request_size_flag(tmp_path):
    """Triton 2.51 buffers a whole request before anything can refuse it (docs/triton.md, "Upload size"). If a
    newer tritonserver offers a size flag, pass it from TritonServer (max_request_bytes) and update the docs."""
    require_tritonserver()
    from squeezetime.serving.triton import TritonServer

    (tmp_path / "m").mkdir()
    (tmp_path / "m" / "config.pbtxt").write_text('name: "m"\nbackend: "python"\n')
    server = TritonServer(tmp_path)
    try:
        out = subprocess.run([str(server.install.binary), "--help"], env=server.environment(), capture_output=True,
                             text=True, timeout=60)
    finally:
        server.cleanup()
    text = out.stdout + out.stderr
    assert "--grpc-port" in text, text[-2000:]
    flags = [line.split()[0] for line in text.splitlines() if line.strip().startswith("--")]
    sized = [f for f in flags if any(w in f for w in ("max-input-size", "max-message", "max-request", "body-size"))]
    assert not sized, f"this tritonserver can bound request sizes ({sized}): wire it into TritonServer"



@pytest.fixture(scope="module")
def queue_timeout_triton(tmp_path_factory):
    """As small_queue_triton, with a 20 ms queue timeout (``default_timeout_microseconds``): above the batcher's
    2 ms queue delay, below what two clips ahead in the queue take here."""
    require_tritonserver()
    from squeezetime.serving.triton import RepoOptions, TritonServer, write_repository

    repo = write_repository(tmp_path_factory.mktemp("queue_timeout_repo"), model_for_tests(),
                            options=RepoOptions(max_batch_size=1, instances=1, max_queue_size=QUEUE, num_threads=1,
                                                queue_timeout_us=20_000))
    shutil.rmtree(repo / "squeezetime_video")
    assert "default_timeout_microseconds: 20000" in (repo / "squeezetime" / "config.pbtxt").read_text()
    with running(TritonServer(repo, start_timeout=240)) as server:
        yield server


def test_triton_queue_timeout_rejects_requests_that_waited_too_long(queue_timeout_triton):
    """Three requests at once fit the queue (one runs, two wait), but the last one outlives the 20 ms queue
    timeout (the network takes tens of ms per clip here): they are answered UNAVAILABLE instead of running
    late. (A per-request ``timeout`` from tritonclient 2.7x was not applied by this 2.51 server: the model's
    configured timeout is what bounds the wait.)"""
    n = QUEUE + 1
    with clip_senders(queue_timeout_triton, n) as (call, alone):
        for _ in range(5):  # a burst whose requests happen not to overlap proves nothing: try again
            results = burst(call, n)
            if any(r[0] != "ok" for r in results):
                break
        timed_out = [r for r in results if r[0] != "ok"]
        assert timed_out, f"no request timed out in the queue: {results}"
        assert all(r[0] == "StatusCode.UNAVAILABLE" and "timeout" in r[2].lower() for r in timed_out), timed_out
        assert any(r[0] == "ok" for r in results), results  # the one that ran first was not touched
        assert alone() == 1  # alone, a request is served

# -- TorchServe: job queue (job_queue_size) ----------------------------------------------------------------------
@pytest.fixture(scope="module")
def small_queue_torchserve(tmp_path_factory):
    require_torchserve()
    from squeezetime.serving.torchserve import server
    from squeezetime.serving.torchserve.archive import ArchiveOptions, build_archive

    base = tmp_path_factory.mktemp("admission_torchserve")
    build_archive(base / "store", options=ArchiveOptions(batch_size=1, max_batch_delay_ms=1, workers=1, threads=2))
    run = base / "run"
    try:
        info = server.start(base / "store", run_dir=run, ports=server.free_ports(), job_queue_size=QUEUE, timeout=240)
        yield info
    finally:
        server.stop(run, timeout=60)


def test_torchserve_full_job_queue_is_503_at_once(small_queue_torchserve, demo_videos):
    from pathlib import Path

    from squeezetime.serving.torchserve.client import RestClient

    info = small_queue_torchserve
    assert f"job_queue_size={QUEUE}" in (Path(info.run_dir) / "config.properties").read_text()
    assert info.extra["job_queue_size"] == QUEUE
    video, truth = demo_videos[0]
    data = Path(video).read_bytes()
    rest = RestClient(info.inference_url, timeout=120)
    status, body, _ = rest.predict_raw(data)  # warm: the first request pays for the worker's first forward
    assert status == 200, body[:300]

    def call(i):
        status, body, _ = rest.predict_raw(data)
        return str(status), body.decode("utf-8", "replace")

    results = overlapping_burst(call, "503")
    check_overload(results, "200", "503", "ServiceUnavailable")
    for outcome, _, body in results:
        if outcome == "200":
            assert truth in body
    status, body, _ = rest.predict_raw(data)
    assert status == 200 and truth in body.decode()
    assert rest.health() == "Healthy"


def test_cli_torchserve_start_has_job_queue_size():
    import argparse

    from squeezetime.cli import torchserve as cli_torchserve

    parser = argparse.ArgumentParser()
    cli_torchserve.register(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["torchserve", "start", "--model-store", "x", "--job-queue-size", "7"])
    assert args.job_queue_size == 7
    assert parser.parse_args(["torchserve", "start", "--model-store", "x"]).job_queue_size == 100
