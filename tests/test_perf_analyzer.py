"""Triton's own benchmark client against our servers: perf_analyzer (from the tritonclient 2.51.0 wheel in
.venv-perf, installed by `make test`) drives the real Triton clip and video models and the real TorchServe, and
every request it sends is answered (perf_analyzer aborts a level on any failed request). Speed is not checked
here: `squeezetime bench-perf` measures it."""
from __future__ import annotations

import struct

import numpy as np
import pytest

from squeezetime.bench import perf_analyzer as pa

pytestmark = [pytest.mark.timeout(900), pytest.mark.slow]  # runs perf_analyzer benchmarks


@pytest.fixture(scope="module")
def binary():
    if pa.find_perf_analyzer() is None:
        pytest.fail("perf_analyzer not found: `make perf-setup` installs it into .venv-perf")
    return pa.check_runs()


def grpc_address(server) -> str:
    return server.grpc_url.replace("grpc://", "")


def server_successes(server, model: str) -> int:
    from squeezetime.triton import TritonClient

    with TritonClient(server.grpc_url, timeout=60) as c:
        stats = c.client.get_inference_statistics(model, as_json=True)
    return int(stats["model_stats"][0]["inference_stats"]["success"].get("count", 0))


def test_bytes_tensor_layout_is_tritons():
    # Triton's BYTES tensor: each element is a little-endian uint32 length followed by its bytes
    assert pa.serialized_bytes(b"ab", b"") == struct.pack("<I", 2) + b"ab" + struct.pack("<I", 0)


def test_missing_binary_is_a_clear_error(tmp_path, monkeypatch):
    monkeypatch.setenv("SQUEEZETIME_PERF_ANALYZER", str(tmp_path / "nothing"))
    monkeypatch.setattr(pa, "CHECKOUT", tmp_path)
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(pa.PerfAnalyzerError, match="perf-setup"):
        pa.check_runs()


def test_clip_model_under_perf_analyzer(binary, triton, served_model):
    d = served_model.data_config
    before = server_successes(triton, "squeezetime")
    row = pa.measure(pa.Level("squeezetime", grpc_address(triton), 2,
                              shape=f"CLIP:{d.num_frames},{d.crop_size},{d.crop_size},3", requests_per_window=8,
                              max_trials=3), binary)
    assert row["concurrency"] == 2 and row["requests_per_s"] > 0
    assert 0 < row["latency_ms"]["p50"] <= row["latency_ms"]["p99"]
    # the server really answered them: its success count grew by at least one count window
    assert server_successes(triton, "squeezetime") - before >= 8


def test_video_model_under_perf_analyzer(binary, triton, tmp_path):
    from squeezetime.synthetic import make_video

    data = pa.triton_bytes_input(tmp_path / "video.json", {"VIDEO": make_video(2, seed=9, num_frames=80)})
    before = server_successes(triton, "squeezetime_video")
    row = pa.measure(pa.Level("squeezetime_video", grpc_address(triton), 2, input_data=data, requests_per_window=4,
                              max_trials=3), binary)
    assert row["requests_per_s"] > 0
    assert server_successes(triton, "squeezetime_video") - before >= 4


def test_torchserve_under_perf_analyzer(binary, torchserve, tmp_path):
    from squeezetime.serving.torchserve.client import encode_npy

    clip = np.random.default_rng(0).integers(0, 256, (16, 224, 224, 3), dtype=np.uint8)
    body = tmp_path / "clip.npy"
    body.write_bytes(encode_npy(clip))
    row = pa.measure(pa.Level("squeezetime", torchserve.inference_url.replace("http://", ""), 2,
                              service_kind="torchserve", protocol="http",
                              input_data=pa.torchserve_input(tmp_path / "in.json", body), requests_per_window=6,
                              max_trials=3), binary)
    assert row["service_kind"] == "torchserve" and row["requests_per_s"] > 0


def test_bench_perf_writes_its_report(binary, tmp_path, served_model):
    """The benchmark's plumbing at its smallest (one level, clip model only): JSON with the in-process
    reference next to perf_analyzer's figures, and the PNG."""
    import json

    from squeezetime.bench.serving import run_perf_benchmark

    report = run_perf_benchmark(served_model, out=tmp_path, concurrencies=[1], requests_per_window=4,
                                in_process_seconds=0.5, torchserve=False, video=False, threads=2)
    saved = json.loads((tmp_path / "bench_perf.json").read_text())
    assert saved["triton_clip"] == report["triton_clip"] and len(saved["triton_clip"]) == 1
    row = saved["triton_clip"][0]
    assert row["clips_per_s"] > 0 and row["adjacent_in_process_clips_per_s"] > 0
    assert row["fraction_of_in_process"] == row["clips_per_s"] / row["adjacent_in_process_clips_per_s"]
    assert (tmp_path / "bench_perf.png").stat().st_size > 10_000


def test_budget_benchmark_floods_from_other_processes(triton):
    """bench-perf's budget row: two client processes send 8K videos back to back, each refused on a limit (this
    test server's max_video_bytes is 1 MB; bench-perf's default server refuses on max_pixels), while this
    process times a cheap video; both processes end."""
    import multiprocessing

    from squeezetime.bench.decode_budget import bench_budget

    result = bench_budget(triton.grpc_url, rounds=2)
    assert result["over_budget_requests"] >= 2 and "(setting max_" in result["over_budget_answer"]
    assert result["median_alone_s"] > 0 and result["median_beside_s"] > 0
    assert not multiprocessing.active_children()
