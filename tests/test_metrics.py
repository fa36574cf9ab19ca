"""Prometheus metrics of the serving paths (squeezetime.serving.metrics): the names and reasons, TorchServe's
metrics.yaml and the Grafana dashboard agree with them, and the counters move on the real servers' metrics
endpoints: Triton's (python backend custom metrics) and TorchServe's (metrics_mode=prometheus) scraped before and
after good and rejected requests."""
from __future__ import annotations

import http.client
import json
import re
import time
import urllib.request
from pathlib import Path

import numpy as np
import pytest

from support.torchserve import require_torchserve
from support.triton import MAX_VIDEO_BYTES

pytestmark = pytest.mark.timeout(600)
ROOT = Path(__file__).resolve().parent.parent
_SAMPLE = re.compile(r"^(?P<name>[a-zA-Z_:][a-zA-Z0-9_:]*)(\{(?P<labels>.*)\})?\s+(?P<value>\S+)")
_LABEL = re.compile(r'(\w+)="((?:[^"\\]|\\.)*)"')


def scrape(url: str) -> list[tuple[str, dict, float]]:
    """(name, labels, value) of every sample of a Prometheus text page."""
    with urllib.request.urlopen(url, timeout=30) as r:
        text = r.read().decode()
    samples = []
    for line in text.splitlines():
        match = _SAMPLE.match(line)
        if match and not line.startswith("#"):
            labels = dict(_LABEL.findall(match.group("labels") or ""))
            samples.append((match.group("name"), labels, float(match.group("value"))))
    return samples


def total(samples, name: str, **labels) -> float:
    """Sum of the samples named ``name`` whose labels include ``labels`` (0 when there is none yet)."""
    return sum(v for n, lab, v in samples if n == name and all(lab.get(k) == w for k, w in labels.items()))


def wait_until(url: str, condition, timeout: float = 60.0):
    """Scrape until ``condition(samples)`` holds (TorchServe's frontend updates its metrics asynchronously)."""
    deadline = time.monotonic() + timeout
    while True:
        samples = scrape(url)
        if condition(samples) or time.monotonic() > deadline:
            return samples
        time.sleep(0.3)


# -- the names, once -----------------------------------------------------------------------------------------------
def _refusal_raised(call):
    from squeezetime.errors import refusal_of

    try:
        call()
    except Exception as e:  # noqa: BLE001 - the error under test
        return refusal_of(e), e
    raise AssertionError(f"{call} raised nothing")


def test_every_refusal_is_typed_by_the_code_that_raises_it():
    """Each refusal reason comes from the type of the error the real code raises (decoding, budgets, request
    checks, cancellation), not from its message."""
    from squeezetime import Classifier, DataConfig
    from squeezetime.errors import Refusal
    from squeezetime.serving.requests import RequestLimits, check_video_size, parse_stride, parse_topk
    from squeezetime.synthetic.generator import encode_video
    from squeezetime.video import DecodeBudget

    moving = np.zeros((40, 64, 96, 3), np.uint8)
    for t in range(len(moving)):
        moving[t, :, t % 8::8] = 255
    video = encode_video(moving, "mp4")
    still = encode_video(np.full((40, 64, 96, 3), 90, np.uint8), "mp4")

    def clips(data, budget=DecodeBudget(), should_stop=None):
        decoder = Classifier(None, DataConfig(), [f"c{i}" for i in range(400)], budget=budget)
        return lambda: decoder.clips(data, "1x1", should_stop=should_stop)

    cases = [
        (lambda: check_video_size(10, RequestLimits(max_video_bytes=5)), Refusal.TOO_LARGE),
        (clips(video, DecodeBudget(max_pixels=32 * 32)), Refusal.OVER_BUDGET),
        (clips(video, DecodeBudget(max_decoded_frames=3)), Refusal.OVER_BUDGET),
        (clips(still), Refusal.STILL_IMAGE),
        (clips(b"\x00garbage" * 100), Refusal.UNDECODABLE),
        (clips(video, should_stop=lambda: True), Refusal.CANCELLED),
        (lambda: parse_topk("many", 5), Refusal.INVALID_REQUEST),
        (lambda: parse_stride(b"-1", 1.0), Refusal.INVALID_REQUEST),
    ]
    for call, expected in cases:
        refusal, error = _refusal_raised(call)
        assert refusal is expected, (expected, type(error).__name__, error)
    assert {expected for _, expected in cases} | {Refusal.OVERLOADED, Refusal.INTERNAL} == set(Refusal)


def test_a_refusal_never_comes_from_message_text():
    from squeezetime.errors import (BudgetError, OverloadedError, Refusal, StillImageError, VideoError,
                                    refusal_of)
    from squeezetime.serving import metrics as m

    misleading = "over max_video_bytes (setting allow_still_images), cancelled"
    assert refusal_of(VideoError(misleading)) is Refusal.UNDECODABLE
    assert refusal_of(BudgetError(misleading)) is Refusal.OVER_BUDGET
    assert refusal_of(StillImageError("x")) is Refusal.STILL_IMAGE
    assert refusal_of(OverloadedError("x")) is Refusal.OVERLOADED
    assert refusal_of(RuntimeError(misleading)) is Refusal.INTERNAL
    # the metric label set is exactly the refusals, and a recorder takes nothing else
    assert set(m.REASONS) == set(Refusal)
    with pytest.raises(TypeError):
        m.check_reason("too_large")
    assert m.check_reason(Refusal.TOO_LARGE) == "too_large"


def test_every_rejection_recorded_in_the_package_is_a_refusal_of_an_error():
    """No ``.rejected(...)`` call in squeezetime/ passes a literal: each passes a Refusal read from an error."""
    import ast

    calls = []
    for path in (ROOT / "squeezetime").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "rejected":
                calls.append((path.name, node))
    assert calls, "the servers record rejections"
    literal = [(name, node.lineno) for name, node in calls
               if any(isinstance(a, ast.Constant) or (isinstance(a, ast.Attribute) and a.attr.isupper())
                      for a in node.args)]
    assert literal == []


def test_torchserve_metrics_yaml_declares_the_shared_metrics():
    import yaml

    from squeezetime.serving import metrics as m

    spec = yaml.safe_load((ROOT / "squeezetime" / "serving" / "torchserve" / "metrics.yaml").read_text())
    model = {kind: {e["name"]: e["dimensions"] for e in entries} for kind, entries in spec["model_metrics"].items()}
    assert model["histogram"][m.STAGE_SECONDS] == ["stage", "ModelName", "Level"]
    assert model["counter"][m.REJECTIONS] == ["reason", "ModelName", "Level"]
    for name in (m.REQUESTS, m.CLIPS):
        assert model["counter"][name] == ["ModelName", "Level"]
    # TorchServe's own metrics stay declared (the file replaces its default metrics.yaml)
    import ts

    default = yaml.safe_load((Path(ts.__file__).parent / "configs" / "metrics.yaml").read_text())
    for section in ("ts_metrics", "model_metrics"):
        for kind, entries in default[section].items():
            ours = {e["name"] for e in spec[section].get(kind, [])}
            assert {e["name"] for e in entries} <= ours, (section, kind)


def test_handler_records_through_torchserves_metric_cache_as_the_yaml_declares(caplog):
    """TorchServe's own metric cache, loaded from metrics.yaml: every record the handler makes matches a declared
    metric (dimensions in order), and comes out as a [METRICS] line the frontend parses."""
    require_torchserve()
    import logging
    from types import SimpleNamespace

    from ts.metrics.metric_cache_yaml_impl import MetricsCacheYamlImpl

    from squeezetime.serving import metrics as m
    from squeezetime.serving.torchserve.handler import TorchServeMetrics

    cache = MetricsCacheYamlImpl(config_file_path=str(ROOT / "squeezetime" / "serving" / "torchserve" / "metrics.yaml"))
    cache.initialize_cache()
    cache.model_name = "squeezetime"
    cache.set_request_ids({0: "request-0"})
    recorder = TorchServeMetrics(lambda: SimpleNamespace(metrics=cache))
    with caplog.at_level(logging.INFO):
        for stage in m.STAGES:
            recorder.stage(stage, 0.25)
        for reason in m.REASONS:
            recorder.rejected(reason)
        recorder.request(3)
        recorder.clips(30)
    lines = [r.getMessage() for r in caplog.records if "[METRICS]" in r.getMessage()]
    assert not [line for line in lines if "Failed" in line], lines
    assert sum(line.startswith(f"[METRICS]{m.STAGE_SECONDS}.Seconds:0.25|#stage:") and "#type:HISTOGRAM" in line
               for line in lines) == len(m.STAGES)
    assert sum(line.startswith(f"[METRICS]{m.REJECTIONS}.Count:1|#reason:") for line in lines) == len(m.REASONS)
    assert any(line.startswith(f"[METRICS]{m.CLIPS}.Count:30|#ModelName:squeezetime,Level:Model") for line in lines)
    with pytest.raises(ValueError):
        recorder.stage("nap", 1.0)


def test_grafana_dashboard_queries_known_metrics():
    from squeezetime.serving import metrics as m

    dashboard = json.loads((ROOT / "deploy" / "grafana" / "squeezetime.json").read_text())
    exprs = [t["expr"] for p in dashboard["panels"] for t in p["targets"]]
    text = " ".join(exprs)
    ours = {m.REQUESTS, m.REJECTIONS, m.CLIPS, m.STAGE_SECONDS + "_bucket", m.STAGE_SECONDS + "_sum",
            m.STAGE_SECONDS + "_count"}
    servers = {"nv_inference_queue_duration_us", "nv_inference_request_success", "nv_inference_request_failure",
               "nv_inference_pending_request_count", "ts_queue_latency_microseconds", "ts_inference_requests_total"}
    used = set(re.findall(r"\b(squeezetime_\w+|nv_\w+|ts_\w+)\b", text))
    assert used <= ours | servers, used - ours - servers
    assert {m.REQUESTS, m.REJECTIONS, m.STAGE_SECONDS + "_bucket", "nv_inference_queue_duration_us"} <= used
    titles = " ".join(p["title"].lower() for p in dashboard["panels"])
    for word in ("requests", "rejections", "stage latency", "queue"):
        assert word in titles
    stages = next(v for v in dashboard["templating"]["list"] if v["name"] == "stage")["query"].split(",")
    assert stages == list(m.STAGES)


# -- Triton --------------------------------------------------------------------------------------------------------
def _video_request(url: str, data: bytes, views: str | None = None):
    import tritonclient.grpc as grpcclient
    from tritonclient.utils import InferenceServerException

    inputs = [grpcclient.InferInput("VIDEO", [1, 1], "BYTES")]
    inputs[0].set_data_from_numpy(np.array([[data]], dtype=np.object_))
    if views is not None:
        inputs.append(grpcclient.InferInput("VIEWS", [1, 1], "BYTES"))
        inputs[-1].set_data_from_numpy(np.array([[views.encode()]], dtype=np.object_))
    client = grpcclient.InferenceServerClient(url)
    try:
        client.infer("squeezetime_video", inputs, client_timeout=120)
        return "ok"
    except InferenceServerException as e:
        return e.status()
    finally:
        client.close()


def test_triton_metrics_move(triton, demo_videos):
    import tritonclient.grpc as grpcclient

    video = open(demo_videos[0][0], "rb").read()
    before = scrape(triton.metrics_url)
    outcomes = [_video_request(triton.grpc_url, video), _video_request(triton.grpc_url, video, "10x3"),
                _video_request(triton.grpc_url, b"\xff\xfe" * 500),                   # not a video
                _video_request(triton.grpc_url, video, "7x7"),                        # unknown views
                _video_request(triton.grpc_url, b"\0" * (MAX_VIDEO_BYTES + 1))]       # over max_video_bytes
    assert outcomes == ["ok", "ok"] + ["StatusCode.INVALID_ARGUMENT"] * 3
    client = grpcclient.InferenceServerClient(triton.grpc_url)
    clip = grpcclient.InferInput("CLIP", [2, 16, 224, 224, 3], "UINT8")
    clip.set_data_from_numpy(np.zeros((2, 16, 224, 224, 3), np.uint8))
    client.infer("squeezetime", [clip], client_timeout=120)
    client.close()
    after = scrape(triton.metrics_url)

    def delta(name, **labels):
        return total(after, name, **labels) - total(before, name, **labels)

    video_model, clip_model = {"model": "squeezetime_video"}, {"model": "squeezetime"}
    assert delta("squeezetime_requests_total", **video_model) == 5
    for reason in ("undecodable", "invalid_request", "too_large"):
        assert delta("squeezetime_rejections_total", reason=reason, **video_model) == 1, reason
    assert delta("squeezetime_rejections_total", reason="cancelled", **video_model) == 0
    assert delta("squeezetime_clips_total", **video_model) == 1 + 30
    assert delta("squeezetime_stage_seconds_count", stage="decode", **video_model) == 3  # 2 videos + garbage
    assert delta("squeezetime_stage_seconds_count", stage="total", **video_model) == 5
    assert delta("squeezetime_stage_seconds_sum", stage="decode", **video_model) > 0
    assert delta("squeezetime_stage_seconds_count", stage="inference", **video_model) == 2
    assert delta("squeezetime_clips_total", **clip_model) == 1 + 30 + 2
    assert delta("squeezetime_stage_seconds_count", stage="inference", **clip_model) >= 2
    # histograms: cumulative buckets up to +Inf = count
    assert total(after, "squeezetime_stage_seconds_bucket", stage="total", le="+Inf", **video_model) == \
        total(after, "squeezetime_stage_seconds_count", stage="total", **video_model)
    # Triton's own queue time, which the dashboard shows next to ours
    assert delta("nv_inference_queue_duration_us", **video_model) > 0
    assert delta("nv_inference_request_success", **clip_model) >= 1


# -- TorchServe ----------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def torchserve_prometheus(tmp_path_factory):
    """The demo archive on a TorchServe exporting Prometheus metrics with the package's metrics.yaml."""
    require_torchserve()
    from squeezetime.serving.torchserve import server
    from squeezetime.serving.torchserve.archive import ArchiveOptions, build_archive

    base = tmp_path_factory.mktemp("torchserve_metrics")
    build_archive(base / "store", options=ArchiveOptions(batch_size=1, max_batch_delay_ms=5, threads=2))
    config = {"metrics_mode": "prometheus",
              "metrics_config": ROOT / "squeezetime" / "serving" / "torchserve" / "metrics.yaml"}
    try:
        yield server.start(base / "store", run_dir=base / "run", ports=server.free_ports(), timeout=240,
                           extra_config=config)
    finally:
        server.stop(base / "run", timeout=60)


def _post(info, body: bytes, headers: dict | None = None) -> int:
    host, port = info.inference_url.replace("http://", "").split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=120)
    try:
        conn.request("POST", "/predictions/squeezetime", body=body,
                     headers={"Content-Type": "application/octet-stream", **(headers or {})})
        response = conn.getresponse()
        response.read()
        return response.status
    finally:
        conn.close()


def test_torchserve_metrics_move(torchserve_prometheus, demo_videos):
    info = torchserve_prometheus
    url = info.metrics_url + "/metrics"
    video = open(demo_videos[0][0], "rb").read()
    before = scrape(url)
    statuses = [_post(info, video), _post(info, video, {"X-SqueezeTime-Views": "10x3"}),
                _post(info, b"\xff\xfe" * 500), _post(info, video, {"X-SqueezeTime-Views": "7x7"})]
    assert statuses == [200, 200, 400, 400]
    model = {"ModelName": "squeezetime"}
    # every counter checked below, with what it must reach: TorchServe's frontend turns each metric line of
    # the worker into its counters on its own time, so each one is waited for, not only the first ones
    expected = [("squeezetime_requests_total", model, 4),
                ("squeezetime_rejections_total", {"reason": "undecodable", **model}, 1),
                ("squeezetime_rejections_total", {"reason": "invalid_request", **model}, 1),
                ("squeezetime_clips_total", model, 1 + 30),
                ("squeezetime_stage_seconds_count", {"stage": "decode", **model}, 3),  # 2 videos + garbage
                ("squeezetime_stage_seconds_count", {"stage": "inference", **model}, 2),
                ("squeezetime_stage_seconds_count", {"stage": "total", **model}, 4)]
    after = wait_until(url, lambda s: all(total(s, name, **labels) >= total(before, name, **labels) + n
                                          for name, labels, n in expected))

    def delta(name, **labels):
        return total(after, name, **labels) - total(before, name, **labels)

    assert delta("squeezetime_requests_total", **model) == 4
    assert delta("squeezetime_rejections_total", reason="undecodable", **model) == 1
    assert delta("squeezetime_rejections_total", reason="invalid_request", **model) == 1
    assert delta("squeezetime_clips_total", **model) == 1 + 30
    assert delta("squeezetime_stage_seconds_count", stage="decode", **model) == 3  # 2 videos + garbage
    assert delta("squeezetime_stage_seconds_sum", stage="decode", **model) > 0
    assert delta("squeezetime_stage_seconds_count", stage="inference", **model) == 2
    assert delta("squeezetime_stage_seconds_count", stage="total", **model) == 4
    assert total(after, "squeezetime_stage_seconds_bucket", stage="total", le="+Inf", **model) == \
        total(after, "squeezetime_stage_seconds_count", stage="total", **model)
    assert delta("ts_inference_requests_total", model_name="squeezetime") == 4
    assert any(n == "ts_queue_latency_microseconds" for n, _, _ in after)
