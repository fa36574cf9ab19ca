"""Triton model directories of the export formats: configs (parsed with tritonclient's model-config
protobuf), the TensorRT engine directory + metadata + compatibility check, and the ONNX artifact served
by the real (CPU, python-backend-only) tritonserver bundled with nvidia-pytriton.

The tensorrt_plan and onnxruntime_onnx models themselves need an NGC Triton (TensorRT / onnxruntime
backends) on a GPU host: here their configs and files are checked, not served.
"""
import json
import os
from pathlib import Path

import numpy as np
import pytest
import torch

import squeezetime
from squeezetime.export import tensorrt as trt
from squeezetime.export import triton_models as T
from squeezetime.export.graph import example_clip

from support.export import assert_matches_eager, golden_model
from support.reference import ROOT

pytestmark = pytest.mark.slow  # exports ONNX models for Triton

NUM_CLASSES = 400


def io_signature(config):
    """(name, data_type, dims) of inputs and outputs: what a client sees of a model."""
    return ([(i.name, i.data_type, list(i.dims)) for i in config.input],
            [(o.name, o.data_type, list(o.dims)) for o in config.output])


def test_trt_config_is_a_valid_tensorrt_plan_model():
    from tritonclient.grpc import model_config_pb2 as pb

    config = T.parse_config(T.trt_config(num_classes=NUM_CLASSES, max_batch_size=64))
    assert config.name == "squeezetime_trt" and config.platform == "tensorrt_plan"
    assert config.max_batch_size == 64
    assert io_signature(config) == ([("CLIP", pb.TYPE_UINT8, [16, 224, 224, 3])],
                                    [("LOGITS", pb.TYPE_FP32, [400]), ("PROBS", pb.TYPE_FP32, [400])])
    assert list(config.dynamic_batching.preferred_batch_size) == [8, 16, 32, 64]
    assert [g.kind for g in config.instance_group] == [pb.ModelInstanceGroup.KIND_GPU]
    assert config.default_model_filename == "model.plan"


def test_onnx_configs_gpu_with_tensorrt_accelerator_and_cpu_without():
    from tritonclient.grpc import model_config_pb2 as pb

    gpu = T.parse_config(T.onnx_config(num_classes=NUM_CLASSES, max_batch_size=32, preferred_batch_sizes=[4, 32]))
    assert gpu.platform == "onnxruntime_onnx" and gpu.max_batch_size == 32
    assert list(gpu.dynamic_batching.preferred_batch_size) == [4, 32]
    assert [g.kind for g in gpu.instance_group] == [pb.ModelInstanceGroup.KIND_GPU]
    (accelerator,) = gpu.optimization.execution_accelerators.gpu_execution_accelerator
    assert accelerator.name == "tensorrt" and accelerator.parameters["precision_mode"] == "FP16"
    cpu = T.parse_config(T.onnx_config(num_classes=NUM_CLASSES, kind="cpu"))
    assert [g.kind for g in cpu.instance_group] == [pb.ModelInstanceGroup.KIND_CPU]
    assert not cpu.optimization.execution_accelerators.gpu_execution_accelerator
    assert io_signature(cpu) == io_signature(gpu)


def test_every_export_model_has_the_io_of_the_squeezetime_model(tmp_path):
    """Same CLIP/LOGITS/PROBS names, types and dims as engineer B's python-backend ``squeezetime`` model."""
    from squeezetime.serving.triton.repository import RepoOptions, parse_config, write_repository

    model = squeezetime.create_model("k400", widen_factor=0.125)
    write_repository(tmp_path, model, options=RepoOptions(max_batch_size=8))
    reference = io_signature(parse_config(tmp_path / "squeezetime" / "config.pbtxt"))
    for text in (T.trt_config(num_classes=NUM_CLASSES), T.onnx_config(num_classes=NUM_CLASSES),
                 T.onnx_python_config(num_classes=NUM_CLASSES)):
        assert io_signature(T.parse_config(text)) == reference


def test_libtorch_config_follows_the_backend_naming_rule():
    config = T.parse_config(T.libtorch_config(num_classes=NUM_CLASSES))
    assert config.platform == "pytorch_libtorch"
    assert [o.name for o in config.output] == ["LOGITS__0", "PROBS__1"]


def test_config_parser_rejects_unknown_fields():
    from google.protobuf.text_format import ParseError

    with pytest.raises(ParseError):
        T.parse_config(T.trt_config(num_classes=NUM_CLASSES) + "max_batch: 3\n")


@pytest.mark.parametrize("text,expected", [("1:8:64", (1, 8, 64)), ("16", (1, 16, 16)), ((2, 4, 8), (2, 4, 8))])
def test_batch_profile_parsing(text, expected):
    assert trt.parse_batch_profile(text) == expected


@pytest.mark.parametrize("bad", ["0:1:2", "4:2:8", "1:2", "a:b:c"])
def test_batch_profile_rejects_bad_ranges(bad):
    with pytest.raises(ValueError, match="MIN:OPT:MAX"):
        trt.parse_batch_profile(bad)


# --- the TensorRT model directory, metadata and compatibility check (no engine can be built here) --------

@pytest.fixture
def trt_model_dir(tmp_path):
    """A squeezetime_trt directory as `export --format tensorrt` writes it, with stand-in engine bytes."""
    model = squeezetime.create_model("k400", widen_factor=0.125)
    meta = trt.engine_metadata(model, "fp16", (1, 8, 64), 224, tensorrt_version="10.3.0",
                               compute_capability="9.0", gpu_name="NVIDIA H100 80GB HBM3")
    meta["torch_tensorrt_version"] = "2.4.0"
    return trt.write_model_dir(tmp_path / "repo", b"stand-in engine bytes", meta, class_names=model.class_names)


def test_trt_model_dir_layout_config_and_metadata(trt_model_dir):
    assert trt_model_dir.name == "squeezetime_trt"
    assert (trt_model_dir / "1" / "model.plan").read_bytes() == b"stand-in engine bytes"
    config = T.parse_config((trt_model_dir / "config.pbtxt").read_text())
    assert config.platform == "tensorrt_plan" and config.max_batch_size == 64
    assert [o.label_filename for o in config.output] == ["", "labels.txt"]
    assert len((trt_model_dir / "labels.txt").read_text().splitlines()) == NUM_CLASSES
    meta = json.loads((trt_model_dir / "1" / "engine.json").read_text())
    for key in ("tensorrt_version", "torch_tensorrt_version", "gpu_name", "compute_capability", "precision",
                "batch_profile", "input", "outputs"):
        assert meta[key] is not None, key
    assert meta["batch_profile"] == {"min": 1, "opt": 8, "max": 64} and meta["precision"] == "fp16"
    assert meta["input"] == {"name": "CLIP", "dtype": "uint8", "dims": [16, 224, 224, 3]}
    assert meta["engine_bytes"] == len(b"stand-in engine bytes")


def test_compatible_engine_is_accepted(trt_model_dir):
    meta = trt.check_engine_compatible(trt_model_dir, tensorrt_version="10.3.0", compute_capability=(9, 0))
    assert meta["precision"] == "fp16"


def test_mismatched_tensorrt_version_is_refused_clearly(trt_model_dir):
    with pytest.raises(trt.EngineCompatibilityError, match=r"built with TensorRT 10\.3\.0 but this server runs "
                       r"TensorRT 10\.7\.0.*rebuild it on the serving host"):
        trt.check_engine_compatible(trt_model_dir, tensorrt_version="10.7.0", compute_capability="9.0")


def test_runtime_version_from_environment(trt_model_dir, monkeypatch):
    monkeypatch.setenv("SQUEEZETIME_TENSORRT_VERSION", "10.3.1")
    with pytest.raises(trt.EngineCompatibilityError, match="10.3.1"):
        trt.check_engine_compatible(trt_model_dir, compute_capability="9.0")


def test_unknown_runtime_version_is_refused_with_instructions(trt_model_dir, monkeypatch):
    monkeypatch.delenv("SQUEEZETIME_TENSORRT_VERSION", raising=False)
    monkeypatch.setattr(trt, "tensorrt_version", lambda: None)
    with pytest.raises(trt.EngineCompatibilityError, match="SQUEEZETIME_TENSORRT_VERSION"):
        trt.check_engine_compatible(trt_model_dir)


def test_other_gpu_architecture_is_refused_unless_hardware_compatible(trt_model_dir):
    with pytest.raises(trt.EngineCompatibilityError, match="compute capability 9.0.*8.6"):
        trt.check_engine_compatible(trt_model_dir, tensorrt_version="10.3.0", compute_capability="8.6")
    path = trt_model_dir / "1" / "engine.json"
    meta = json.loads(path.read_text())
    path.write_text(json.dumps(dict(meta, hardware_compatible=True)))
    trt.check_engine_compatible(trt_model_dir, tensorrt_version="10.3.0", compute_capability="8.6")


def test_engine_without_metadata_is_refused(tmp_path):
    (tmp_path / "squeezetime_trt" / "1").mkdir(parents=True)
    (tmp_path / "squeezetime_trt" / "1" / "model.plan").write_bytes(b"x")
    with pytest.raises(trt.EngineCompatibilityError, match="engine.json"):
        trt.check_engine_compatible(tmp_path / "squeezetime_trt", tensorrt_version="10.3.0")


def test_missing_torch_tensorrt_is_a_clear_error(monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "torch_tensorrt", None)
    with pytest.raises(trt.TensorRTUnavailable, match=r"squeezetime\[tensorrt\]"):
        trt.build_engine(squeezetime.create_model("k400", widen_factor=0.125))


def test_torch_tensorrt_is_imported_lazily_and_only_by_tensorrt_module():
    import subprocess
    import sys

    code = ("import sys, squeezetime.export.tensorrt, squeezetime.cli.export, squeezetime.export.onnx; "
            "print('torch_tensorrt' in sys.modules, 'tensorrt' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["False", "False"]
    package = ROOT / "squeezetime"
    importers = sorted(str(p.relative_to(ROOT)) for p in package.rglob("*.py")
                       if "import torch_tensorrt" in p.read_text(encoding="utf-8"))
    assert importers == ["squeezetime/export/tensorrt.py"]


# --- the ONNX artifact in the real (CPU) tritonserver -------------------------------------------------------

@pytest.fixture(scope="module")
def onnx_repo(tmp_path_factory):
    from squeezetime.export.onnx import export_onnx

    model = golden_model()
    work = tmp_path_factory.mktemp("onnx_repo")
    path = export_onnx(model, work / "squeezetime.onnx", max_batch=8)
    repo = work / "repo"
    T.write_onnx_model_dir(repo, path, num_classes=NUM_CLASSES, class_names=model.class_names,
                           python_backend=True, max_batch_size=8, num_threads=2)
    T.write_onnx_model_dir(work / "gpu_repo", path, num_classes=NUM_CLASSES, max_batch_size=8)
    return model, repo, work / "gpu_repo"


def test_onnx_model_dirs(onnx_repo):
    _, repo, gpu_repo = onnx_repo
    python_config = T.parse_config((repo / "squeezetime_onnx_python" / "config.pbtxt").read_text())
    assert python_config.backend == "python" and python_config.max_batch_size == 8
    assert (repo / "squeezetime_onnx_python" / "1" / "model.py").is_file()
    gpu_config = T.parse_config((gpu_repo / "squeezetime_onnx" / "config.pbtxt").read_text())
    assert gpu_config.platform == "onnxruntime_onnx"
    assert (gpu_repo / "squeezetime_onnx" / "1" / "model.onnx").read_bytes() == \
        (repo / "squeezetime_onnx_python" / "1" / "model.onnx").read_bytes()


def _server_python():
    venv = ROOT / ".venv-triton" / "bin" / "python"
    return str(venv) if venv.exists() else None


def test_onnx_artifact_served_by_tritonserver_python_backend(onnx_repo):
    """Real tritonserver 2.51 (python backend only) runs the ONNX file with onnxruntime: batch 1 and 5."""
    from squeezetime.serving.triton import TritonServerError, find_tritonserver
    from squeezetime.serving.triton.server import TritonServer
    import tritonclient.grpc as grpcclient

    try:
        find_tritonserver()
    except TritonServerError as e:
        pytest.fail(f"no tritonserver (run `make triton-setup export-setup`): {e}")
    model, repo, _ = onnx_repo
    with TritonServer(repo, python=_server_python(), start_timeout=240) as server:
        client = grpcclient.InferenceServerClient(server.grpc_url)
        assert client.is_model_ready("squeezetime_onnx_python")
        for batch in (1, 5):
            clips = example_clip(batch, seed=10 + batch)
            inp = grpcclient.InferInput("CLIP", list(clips.shape), "UINT8")
            inp.set_data_from_numpy(clips.numpy())
            result = client.infer("squeezetime_onnx_python", [inp], outputs=[
                grpcclient.InferRequestedOutput("LOGITS"), grpcclient.InferRequestedOutput("PROBS")])
            logits = torch.from_numpy(result.as_numpy("LOGITS").copy())
            probs = torch.from_numpy(result.as_numpy("PROBS").copy())
            assert_matches_eager(model, clips, logits, probs)
        bad = grpcclient.InferInput("CLIP", [1, 8, 224, 224, 3], "UINT8")
        bad.set_data_from_numpy(np.zeros((1, 8, 224, 224, 3), np.uint8))
        with pytest.raises(Exception, match="(?i)shape|dims|unexpected"):
            client.infer("squeezetime_onnx_python", [bad])


def test_serve_refuses_a_mismatched_engine(trt_model_dir, monkeypatch):
    """`squeezetime serve` checks every tensorrt_plan model before it starts tritonserver."""
    from squeezetime.serving.triton import TritonServerError
    from squeezetime.serving.triton.server import check_engines

    monkeypatch.setenv("SQUEEZETIME_TENSORRT_VERSION", "10.7.0")
    with pytest.raises(TritonServerError, match=r"will not serve squeezetime_trt: .*built with TensorRT 10.3.0.*10.7.0"):
        check_engines(trt_model_dir.parent)
    monkeypatch.setenv("SQUEEZETIME_TENSORRT_VERSION", "10.3.0")
    check_engines(trt_model_dir.parent)  # same TensorRT (and no local GPU to compare): accepted
