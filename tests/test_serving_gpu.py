"""Servers on a GPU: where Triton's clip model and the TorchServe handler put the classifier (from Triton's
instance kind and device id, from TorchServe's gpu_id and the archive's device), and which CUDA graph buckets
their warm-up captures.

CPU tests run our own code for real (a Triton repository written by ``write_repository``, ``ClipModel.initialize``
in-process, the handler's BaseHandler life cycle); only the CUDA backend is stood in by ``RecordingBackend`` (the
real CPU backend's logits plus a ``warmup`` that records its sizes) and torch's CUDA queries say what a GPU
machine would say. The tests marked ``gpu`` run the real CUDA path and skip without a GPU."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

import squeezetime
from support.triton import model_for_tests
from squeezetime.backends import BackendError
from squeezetime.serving.devices import require_cuda, triton_device, warm_up_graphs
from squeezetime.serving.triton import RepoOptions, write_repository

NO_GPU = "no CUDA GPU (run make gpu-check on one)"
gpu = pytest.mark.skipif(not torch.cuda.is_available(), reason=NO_GPU)


class RecordingBackend:
    """Stands in for the CUDA backend: the real (CPU) backend's logits, and a ``warmup`` that records its sizes."""

    def __init__(self, inner):
        self.inner, self.warmed = inner, []
        self.name, self.device, self.dtype = inner.name, inner.device, inner.dtype

    def logits(self, clips):
        return self.inner.logits(clips)

    def warmup(self, batch_sizes):
        self.warmed.append(tuple(batch_sizes))


@pytest.fixture
def load_calls(monkeypatch):
    """``squeezetime.load`` records what it was asked for, then loads on the CPU behind a RecordingBackend."""
    calls, real_load = [], squeezetime.load

    def load(source, **kwargs):
        calls.append(kwargs)
        classifier = real_load(source, **{**kwargs, "device": "cpu", "dtype": None, "backend": "eager"})
        classifier.backend = RecordingBackend(classifier.backend)
        return classifier

    monkeypatch.setattr(squeezetime, "load", load)
    return calls


@pytest.fixture
def two_gpus(monkeypatch):
    """torch's CUDA queries answer as on a machine with two GPUs (nothing else of CUDA is touched)."""
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)


def triton_args(repo, kind: str, device_id: int = 0, name: str = "squeezetime") -> dict:
    """What Triton's python backend passes to ``initialize`` of an instance of ``name``."""
    return {"model_config": json.dumps(_config_json(repo / name / "config.pbtxt")), "model_instance_kind": kind,
            "model_instance_device_id": str(device_id), "model_instance_name": f"{name}_0_0",
            "model_repository": str(repo / name), "model_version": "1", "model_name": name}


def _config_json(path) -> dict:
    """config.pbtxt -> the JSON Triton hands to python models (``MessageToDict`` of the ModelConfig protobuf);
    without tritonclient (the GPU machine has none) the fields ``ClipModel`` reads, taken from the text."""
    try:
        from google.protobuf.json_format import MessageToDict
        from tritonclient.grpc import model_config_pb2  # noqa: F401 - what parse_config needs
    except ImportError:
        return _fields_clip_model_reads(path.read_text())
    from squeezetime.serving.triton import parse_config

    return MessageToDict(parse_config(path), preserving_proto_field_name=True)


def _fields_clip_model_reads(text: str) -> dict:
    import re

    clip_dims = re.search(r'name: "CLIP"\s+data_type: \w+\s+dims: \[([^\]]+)\]', text).group(1)
    params = re.findall(r'\{ key: "(\w+)" value: \{ string_value: "([^"]*)" \} \}', text)
    return {"max_batch_size": int(re.search(r"^max_batch_size: (\d+)", text, re.M).group(1)),
            "input": [{"name": "CLIP", "dims": [d.strip() for d in clip_dims.split(",")]}],
            "parameters": {key: {"string_value": value} for key, value in params}}


def test_the_text_fallback_reads_what_the_protobuf_reads(gpu_repo):
    pytest.importorskip("tritonclient", reason="tritonclient is not installed")
    path = gpu_repo / "squeezetime" / "config.pbtxt"
    full, fields = _config_json(path), _fields_clip_model_reads(path.read_text())
    assert fields["max_batch_size"] == full["max_batch_size"] == 8
    assert [int(d) for d in fields["input"][0]["dims"]] == [int(d) for d in full["input"][0]["dims"]]
    assert fields["parameters"] == full["parameters"]


# -- device choice ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("kind, device_id, expected", [("GPU", "1", "cuda:1"), ("KIND_GPU", "0", "cuda:0"),
                                                       ("CPU", "0", "cpu"), ("MODEL", "0", "cpu"), (None, None, "cpu")])
def test_triton_instance_kind_and_device_id_choose_the_device(kind, device_id, expected):
    assert triton_device(kind, device_id) == expected


def test_a_gpu_instance_without_a_usable_gpu_is_refused_with_the_reason(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(BackendError, match="Triton .* put this model on cuda:0, but torch .* sees no CUDA GPU"):
        require_cuda("cuda:0", "Triton (KIND_GPU instance 'squeezetime_0_0')")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    with pytest.raises(BackendError, match="cuda:3, but torch sees 1 GPU"):
        require_cuda("cuda:3", "Triton")


def test_warm_up_asks_nothing_of_a_backend_without_graphs():
    classifier = squeezetime.load(model_for_tests(), backend="eager")
    assert not hasattr(classifier.backend, "warmup")
    assert warm_up_graphs(classifier, 8) == ()


# -- Triton: the clip model in-process (Triton's python backend stub is not needed for initialize) -------------
@pytest.fixture(scope="module")
def gpu_repo(tmp_path_factory):
    return write_repository(tmp_path_factory.mktemp("gpu_repo"), model_for_tests(),
                            options=RepoOptions(kind="gpu", max_batch_size=8))


def test_triton_gpu_instance_loads_on_its_device_in_fp16_and_warms_the_buckets(gpu_repo, load_calls, two_gpus):
    from squeezetime.serving.triton.clip_model import ClipModel

    model = ClipModel()
    model.initialize(triton_args(gpu_repo, "GPU", device_id=1))
    assert model.device == "cuda:1"
    assert [(c["device"], c["dtype"], c["batch_size"]) for c in load_calls] == [("cuda:1", "float16", 8)]
    assert model.classifier.backend.warmed == [(1, 2, 4, 8)]


def test_triton_cpu_instance_of_a_cpu_repository_stays_on_the_cpu(tmp_path, load_calls):
    from squeezetime.serving.triton.clip_model import ClipModel

    repo = write_repository(tmp_path, model_for_tests(), options=RepoOptions(max_batch_size=4))
    model = ClipModel()
    model.initialize(triton_args(repo, "CPU"))
    assert model.device == "cpu"
    assert [(c["device"], c["dtype"], c["batch_size"]) for c in load_calls] == [("cpu", "float32", 4)]
    assert model.classifier.backend.warmed == [(1, 2, 4)]  # a backend with graphs would be warmed on any device


def test_triton_gpu_instance_on_a_machine_without_cuda_fails_to_load(gpu_repo, monkeypatch):
    from squeezetime.serving.triton.clip_model import ClipModel

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(BackendError, match="KIND_GPU instance 'squeezetime_0_0'.* sees no CUDA GPU"):
        ClipModel().initialize(triton_args(gpu_repo, "GPU"))


# -- TorchServe: the handler's device and warm-up ----------------------------------------------------------------
@pytest.fixture(scope="module")
def ts_handler():
    """The handler module, imported before torch's CUDA queries are stood in (TorchServe's BaseHandler asks
    them at import)."""
    pytest.importorskip("ts", reason="TorchServe is not installed (requirements/main/torchserve.txt)")
    from squeezetime.serving.torchserve import handler

    return handler


@pytest.fixture(scope="module")
def archive_dir(tmp_path_factory, ts_handler):
    d = tmp_path_factory.mktemp("archive")
    squeezetime.save_checkpoint(model_for_tests(), d / "model.pth")
    return d


class Metrics:
    """Accepts what the handler records (TorchServe's metric cache needs a running frontend)."""

    def add_time(self, *args, **kwargs):
        pass

    def add_metric(self, *args, **kwargs):
        pass


def handler_context(model_dir, handler_settings: dict, gpu=None):
    """TorchServe's own Context for a worker with ``gpu`` as its gpu_id, and one request slot."""
    from ts.context import Context, RequestProcessor

    manifest = {"model": {"modelName": "squeezetime", "serializedFile": "model.pth", "handler": "h.py"}}
    context = Context("squeezetime", str(model_dir), manifest, batch_size=1, gpu=gpu, mms_version="0.12",
                      metrics=Metrics(), model_yaml_config={"handler": {"decode_threads": 1, **handler_settings}})
    context.request_processor = [RequestProcessor({})]
    return context


def test_torchserve_gpu_archive_runs_on_its_gpu_id_and_warms_the_buckets(archive_dir, ts_handler, load_calls,
                                                                         two_gpus):
    handler = ts_handler.SqueezeTimeHandler()
    handler.initialize(handler_context(archive_dir, {"device": "gpu", "max_clips_per_forward": 16}, gpu=1))
    assert handler.device == torch.device("cuda:1")
    assert [(str(c["device"]), c["dtype"], c["batch_size"]) for c in load_calls] == [("cuda:1", None, 16)]
    assert handler.classifier.backend.warmed == [(1, 2, 4, 8, 16)]


def test_torchserve_device_settings(ts_handler, two_gpus, monkeypatch):
    context_device = ts_handler.context_device

    assert context_device({"gpu_id": 0}) == torch.device("cuda:0")  # auto: the GPU TorchServe assigned
    assert context_device({"gpu_id": None}) == torch.device("cpu")
    assert context_device({"gpu_id": 1}, "cpu") == torch.device("cpu")  # deviceType cpu on a GPU host
    assert context_device({"gpu_id": 1}, "gpu") == torch.device("cuda:1")
    with pytest.raises(RuntimeError, match="asks for a GPU .* assigned this worker none"):
        context_device({"gpu_id": None}, "gpu")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert context_device({"gpu_id": 0}) == torch.device("cpu")  # auto falls back, gpu refuses
    with pytest.raises(BackendError, match="TorchServe \\(gpu_id 0\\) put this model on cuda:0"):
        context_device({"gpu_id": 0}, "gpu")


# -- on a GPU: the real CUDA path ---------------------------------------------------------------------------------
def cpu_reference(clips: np.ndarray) -> np.ndarray:
    return squeezetime.load(model_for_tests(), backend="eager").scores(clips).numpy()


@gpu
def test_gpu_triton_clip_model_serves_from_cuda_graphs(gpu_repo):
    from squeezetime.serving.triton.clip_model import ClipModel

    model = ClipModel()
    model.initialize(triton_args(gpu_repo, "GPU", device_id=0))
    backend = model.classifier.backend
    assert model.device == "cuda:0" and backend.device == torch.device("cuda:0") and backend.dtype == torch.float16
    assert hasattr(backend, "warmup"), f"{backend!r} is not the CUDA graph backend (are the CUDA kernels built?)"
    runner = getattr(backend, "runner", None)
    if runner is not None:  # the graphs the load captured
        assert runner.captured(backend.default_clip_shape()) == [1, 2, 4, 8]
    clips = np.random.default_rng(0).integers(0, 256, (3, 16, 224, 224, 3), dtype=np.uint8)  # padded to 4
    probs = model.classifier.infer(clips).probs.numpy()
    np.testing.assert_allclose(probs, cpu_reference(clips), atol=2e-2)


@gpu
def test_gpu_torchserve_handler_serves_on_cuda(archive_dir, demo_videos):
    from squeezetime.serving.torchserve.handler import SqueezeTimeHandler

    handler = SqueezeTimeHandler()
    context = handler_context(archive_dir, {"device": "gpu", "max_clips_per_forward": 16}, gpu=0)
    handler.initialize(context)
    assert handler.classifier.backend.device == torch.device("cuda:0") and hasattr(handler.classifier.backend, "warmup")
    path, truth = demo_videos[0]
    out = handler.handle([{"body": open(path, "rb").read()}], context)
    assert json.loads(out[0])[0]["label"] == truth
