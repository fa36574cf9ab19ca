"""The TorchServe handler driven through BaseHandler's life cycle with TorchServe's own ``Context`` (as
TorchServe's handler tests do), no server: initialize from an archive directory, per-request 400s, batching,
class names from index_to_name.json, the device from gpu_id, legacy settings."""
from __future__ import annotations

import io
import json

import numpy as np
import pytest
import torch

import squeezetime
from support.torchserve import require_torchserve


class Metrics:
    """What BaseHandler.handle and the handler record (TorchServe's metric cache needs a running frontend)."""

    def __init__(self):
        self.recorded = []

    def add_time(self, name, value, idx=None, unit="ms", *args, **kwargs):
        self.recorded.append(name)

    def add_metric(self, name, value, unit, *args, **kwargs):
        self.recorded.append(name)


def npy(array) -> bytes:
    buf = io.BytesIO()
    np.save(buf, array)
    return buf.getvalue()


def make_context(model_dir, headers: list[dict], yaml_config=None, gpu=None):
    from ts.context import Context, RequestProcessor

    manifest = {"model": {"modelName": "squeezetime", "serializedFile": "model.pth", "handler": "h.py"}}
    context = Context("squeezetime", str(model_dir), manifest, batch_size=len(headers), gpu=gpu, mms_version="0.12",
                      metrics=Metrics(), model_yaml_config=yaml_config or {})
    context.request_processor = [RequestProcessor(h) for h in headers]
    return context


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    require_torchserve()
    d = tmp_path_factory.mktemp("archive")
    model = squeezetime.demo_model()
    squeezetime.save_checkpoint(model, d / "model.pth")
    names = [f"motion {i}: {n}" for i, n in enumerate(model.class_names)]  # the archive's names win
    (d / "index_to_name.json").write_text(json.dumps({str(i): n for i, n in enumerate(names)}))
    return d


@pytest.fixture(scope="module")
def handler(model_dir):
    from squeezetime.serving.torchserve.handler import SqueezeTimeHandler

    h = SqueezeTimeHandler()
    h.initialize(make_context(model_dir, [{}], {"handler": {"max_clips_per_request": 4}}))
    return h


def test_initialize_reads_archive_names_device_and_settings(handler, model_dir):
    assert handler.initialized and handler.device == torch.device("cpu")
    assert handler.classifier.class_names[0].startswith("motion 0: ")
    assert handler.classifier.backend.name == "optimized"
    assert handler.limits.max_clips == 4


def test_a_batch_with_bad_requests_answers_each_on_its_own(handler, model_dir, demo_videos):
    path, truth = demo_videos[2]
    video = open(path, "rb").read()
    requests = [{"body": video}, {"body": b"garbage"}, {"body": npy(np.zeros((5, 16, 224, 224, 3), np.uint8))},
                {"body": video}, {"body": video}]
    headers = [{}, {}, {}, {"X-SqueezeTime-Topk": "ü"}, {"X-SqueezeTime-Views": "10x3", "X-SqueezeTime-Topk": "2"}]
    context = make_context(model_dir, headers)
    out = handler.handle(requests, context)
    assert len(out) == 5
    first, last = json.loads(out[0]), json.loads(out[4])
    assert first[0]["label"].endswith(truth) and len(first) == 5 and len(last) == 2
    expected = handler.classifier.classify(path, topk=5)
    np.testing.assert_allclose([p["probability"] for p in first], [p for _, p in expected], atol=1e-5)
    for i, message in ((1, "not a readable video"), (2, "1 to 4 clips"), (3, "topk must be")):
        code, phrase = context.get_response_status(i)
        assert code == 400 and message in phrase and phrase.isascii(), (i, phrase)
        assert json.loads(out[i])["message"] == phrase
    assert context.get_response_status(3)[1].count("\\xfc") == 1  # the client's text, escaped
    assert context.get_response_headers(0)["X-SqueezeTime-Batch-Requests"] == "5"
    assert context.get_response_headers(0)["X-SqueezeTime-Backend"] == "optimized"
    assert "HandlerTime" in context.metrics.recorded and "SqueezeTimeBatchClips" in context.metrics.recorded


def test_non_utf8_header_and_hostile_fields_are_400s(handler, model_dir, demo_videos):
    video = open(demo_videos[0][0], "rb").read()
    requests = [{"body": video}, {"body": video, "views": b"\xff\xfe"}, {"body": {"video": "@@@"}},
                {"body": video, "options": b'{"views": "\\u00e9"}'}, {"body": video}]
    headers = [{"X-SqueezeTime-Views": b"\xff\xfe\xfd"}, {}, {}, {}, {}]
    context = make_context(model_dir, headers)
    out = handler.handle(requests, context)
    for i in range(4):
        code, phrase = context.get_response_status(i)
        assert code == 400 and phrase.isascii(), (i, phrase)
    assert json.loads(out[4])[0]["label"]


def test_only_bad_requests(handler, model_dir):
    context = make_context(model_dir, [{}, {}])
    out = handler.handle([{"body": b""}, {"nothing": b"x", "other": b"y"}], context)
    assert [context.get_response_status(i)[0] for i in range(2)] == [400, 400]
    assert all(json.loads(o)["code"] == 400 for o in out)


def test_legacy_optimize_setting_and_gpu_id_without_gpu(model_dir):
    from squeezetime.serving.torchserve.handler import SqueezeTimeHandler, context_device

    h = SqueezeTimeHandler()
    h.initialize(make_context(model_dir, [{}], {"handler": {"optimize": "off"}}, gpu=0))
    assert h.classifier.backend.name == "eager"
    assert h.device == (torch.device("cuda:0") if torch.cuda.is_available() else torch.device("cpu"))
    assert context_device({"gpu_id": None}) == torch.device("cpu")
