"""The Triton model repository (configs validated with tritonclient's model-config protobuf), the committed
templates, the server locator and the client's errors: no server needed."""
from __future__ import annotations

import json
import os
import string
import time
from pathlib import Path

import pytest

import squeezetime

from _triton_support import model_for_tests

from squeezetime.serving.triton import RepoOptions, parse_config, write_repository
from squeezetime.serving.triton.repository import template_dir

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def model():
    return model_for_tests()


def test_repository_layout_and_configs(tmp_path, model):
    from tritonclient.grpc import model_config_pb2 as pb

    repo = write_repository(tmp_path / "repo", model, options=RepoOptions(max_batch_size=4, instances=2))
    names = model.class_names
    clip = parse_config(repo / "squeezetime" / "config.pbtxt")
    assert clip.name == "squeezetime" and clip.backend == "python" and clip.max_batch_size == 4
    assert [(i.name, i.data_type, list(i.dims)) for i in clip.input] == [("CLIP", pb.TYPE_UINT8, [16, 224, 224, 3])]
    assert [(o.name, o.data_type, list(o.dims)) for o in clip.output] == [
        ("LOGITS", pb.TYPE_FP32, [len(names)]), ("PROBS", pb.TYPE_FP32, [len(names)])]
    assert clip.output[1].label_filename == "labels.txt"
    assert clip.HasField("dynamic_batching")
    assert [(g.count, g.kind) for g in clip.instance_group] == [(2, pb.ModelInstanceGroup.KIND_CPU)]
    video = parse_config(repo / "squeezetime_video" / "config.pbtxt")
    assert video.name == "squeezetime_video" and video.HasField("dynamic_batching")
    assert [(i.name, i.data_type, list(i.dims), i.optional) for i in video.input] == [
        ("VIDEO", pb.TYPE_STRING, [1], False), ("VIEWS", pb.TYPE_STRING, [1], True),
        ("TOPK", pb.TYPE_INT32, [1], True)]
    assert [(o.name, o.data_type, list(o.dims)) for o in video.output] == [
        ("LABELS", pb.TYPE_STRING, [-1]), ("SCORES", pb.TYPE_FP32, [-1])]
    assert video.parameters["clip_max_batch_size"].string_value == "4"
    for name in ("squeezetime", "squeezetime_video"):
        assert (repo / name / "labels.txt").read_text().splitlines() == list(names)
        assert (repo / name / "1" / "model.py").read_text() == (template_dir() / name / "1" / "model.py").read_text()
    import squeezetime
    reloaded = squeezetime.load_checkpoint(repo / "squeezetime" / "1" / "model.pth")
    assert reloaded.class_names == model.class_names


def test_gpu_kind_dtype_and_limits(tmp_path, model):
    from tritonclient.grpc import model_config_pb2 as pb

    repo = write_repository(tmp_path, model, options=RepoOptions(kind="gpu", dtype="float16",
                                                                 max_video_bytes=12345))
    clip = parse_config(repo / "squeezetime" / "config.pbtxt")
    assert clip.instance_group[0].kind == pb.ModelInstanceGroup.KIND_GPU
    assert clip.parameters["dtype"].string_value == "float16"
    video = parse_config(repo / "squeezetime_video" / "config.pbtxt")
    assert video.parameters["max_video_bytes"].string_value == "12345"
    for name in ("squeezetime", "squeezetime_video"):  # the video model decodes with the checkpoint's pipeline
        saved = json.loads((repo / name / "data_config.json").read_text())
        assert squeezetime.DataConfig.from_dict(saved) == model.data_config


@pytest.mark.parametrize("bad", [dict(kind="tpu"), dict(dtype="int8"), dict(max_batch_size=0),
                                 dict(instances=0), dict(backend="maybe")])
def test_bad_options(tmp_path, model, bad):
    import squeezetime
    with pytest.raises(squeezetime.InputError):
        write_repository(tmp_path, model, options=RepoOptions(**bad))


def test_bad_config_is_rejected_by_the_protobuf(tmp_path):
    from google.protobuf.text_format import ParseError

    path = tmp_path / "config.pbtxt"
    path.write_text('name: "x"\nmax_batch_sise: 4\n')
    with pytest.raises(ParseError):
        parse_config(path)


def test_committed_triton_repo_is_the_package_templates():
    for name in ("squeezetime", "squeezetime_video"):
        committed = ROOT / "triton_repo" / name
        assert committed.resolve() == (template_dir() / name).resolve()
        fields = {m.group("braced") for m in string.Template.pattern.finditer((committed / "config.pbtxt").read_text())
                  if m.group("braced")}
        assert fields and fields <= {"max_batch_size", "num_frames", "crop_size", "num_classes", "instances",
                                     "video_instances", "kind", "dtype", "num_threads", "max_queue_delay_us",
                                     "max_video_bytes", "backend", "max_pixels", "max_frames",
                                     "max_decode_seconds", "allow_still_images", "max_queue_size",
                                     "queue_timeout_us", "decode_threads", "max_in_flight", "warmup", "checkpoint"}
    assert (ROOT / "triton_repo" / "README.md").is_file()


def test_locator_messages(monkeypatch, tmp_path):
    from squeezetime.serving.triton import TritonServerError, find_tritonserver
    from squeezetime.serving.triton.server import TritonServer

    with pytest.raises(TritonServerError, match="does not exist"):
        find_tritonserver(tmp_path / "nope")
    monkeypatch.setenv("SQUEEZETIME_TRITONSERVER", str(tmp_path / "nope"))
    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.setattr("squeezetime.serving.triton.server.PROJECT_ROOT", tmp_path)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr("squeezetime.serving.triton.server._safe_find", lambda name: False)
    with pytest.raises(TritonServerError, match="no tritonserver found.*SQUEEZETIME_TRITONSERVER"):
        find_tritonserver()
    with pytest.raises(TritonServerError, match="not a model repository"):
        TritonServer(tmp_path)


def test_client_server_down_is_clear_and_bounded():
    from squeezetime.serving.triton import free_port
    from squeezetime.triton import TritonClient, TritonUnavailable

    client = TritonClient(f"127.0.0.1:{free_port()}", timeout=3)
    start = time.monotonic()
    assert not client.is_ready()
    with pytest.raises(TritonUnavailable, match="squeezetime serve"):
        client.check()
    with pytest.raises(TritonUnavailable):
        client.classify(b"\x00" * 10)
    assert time.monotonic() - start < 30
    client.close()
