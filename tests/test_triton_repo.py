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

from support.triton import model_for_tests

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


def test_gpu_repository_places_both_models_on_the_gpus_and_prefers_the_graph_buckets(tmp_path, model):
    from tritonclient.grpc import model_config_pb2 as pb

    from squeezetime.optimize.cuda_graphs import buckets_up_to

    repo = write_repository(tmp_path, model, options=RepoOptions(kind="gpu", gpus=(0, 1), max_batch_size=32,
                                                                 instances=2, video_instances=3))
    clip = parse_config(repo / "squeezetime" / "config.pbtxt")
    video = parse_config(repo / "squeezetime_video" / "config.pbtxt")
    timeline = parse_config(repo / "squeezetime_timeline" / "config.pbtxt")
    gpu, cpu = pb.ModelInstanceGroup.KIND_GPU, pb.ModelInstanceGroup.KIND_CPU
    assert [(g.kind, g.count, list(g.gpus)) for g in clip.instance_group] == [(gpu, 2, [0, 1])]
    assert [(g.kind, g.count, list(g.gpus)) for g in video.instance_group] == [(gpu, 3, [0, 1])]
    assert [g.kind for g in timeline.instance_group] == [cpu]  # it scores through the clip model (BLS)
    assert clip.max_batch_size == 32 and video.parameters["clip_max_batch_size"].string_value == "32"
    assert list(clip.dynamic_batching.preferred_batch_size) == list(buckets_up_to(32)) == [1, 2, 4, 8, 16, 32]
    assert clip.parameters["dtype"].string_value == "float16"  # the GPU's default precision
    text = (repo / "squeezetime" / "config.pbtxt").read_text()
    note = text[:text.index("dynamic_batching {")].splitlines()[-2:]
    assert all(line.startswith("#") for line in note) and "CUDA graph buckets up to max_batch_size" in note[0]


def test_gpu_repository_without_gpus_uses_every_visible_gpu(tmp_path, model):
    from tritonclient.grpc import model_config_pb2 as pb

    repo = write_repository(tmp_path, model, options=RepoOptions(kind="gpu", max_batch_size=1, dtype="float32"))
    clip = parse_config(repo / "squeezetime" / "config.pbtxt")
    assert [(g.kind, list(g.gpus)) for g in clip.instance_group] == [(pb.ModelInstanceGroup.KIND_GPU, [])]
    assert list(clip.dynamic_batching.preferred_batch_size) == [1]
    assert clip.parameters["dtype"].string_value == "float32"


def test_cpu_repository_prefers_full_batches(tmp_path, model):
    from tritonclient.grpc import model_config_pb2 as pb

    repo = write_repository(tmp_path, model, options=RepoOptions(max_batch_size=6))
    clip = parse_config(repo / "squeezetime" / "config.pbtxt")
    video = parse_config(repo / "squeezetime_video" / "config.pbtxt")
    assert list(clip.dynamic_batching.preferred_batch_size) == [6]
    assert clip.parameters["dtype"].string_value == "float32"
    for config in (clip, video):
        assert [(g.kind, list(g.gpus)) for g in config.instance_group] == [(pb.ModelInstanceGroup.KIND_CPU, [])]


@pytest.mark.parametrize("bad, message", [(dict(kind="gpu", max_batch_size=12), r"got 12 \(a batch of 12 runs as 16\)"),
                                          (dict(kind="gpu", max_batch_size=512), "CUDA graph bucket"),
                                          (dict(gpus=(0,)), "go with kind 'gpu'"),
                                          (dict(kind="gpu", gpus=(-1,)), "device ids >= 0")])
def test_bad_gpu_options(tmp_path, model, bad, message):
    with pytest.raises(squeezetime.InputError, match=message):
        write_repository(tmp_path, model, options=RepoOptions(**bad))


def test_cli_writes_a_gpu_repository(tmp_path, capsys):
    from squeezetime.cli import main

    assert main(["triton-repo", "--demo", "--out", str(tmp_path), "--kind", "gpu", "--gpus", "1,3",
                 "--max-batch-size", "16"]) == 0
    clip = parse_config(tmp_path / "squeezetime" / "config.pbtxt")
    assert list(clip.instance_group[0].gpus) == [1, 3] and clip.max_batch_size == 16
    assert list(clip.dynamic_batching.preferred_batch_size) == [1, 2, 4, 8, 16]
    assert main(["triton-repo", "--demo", "--out", str(tmp_path), "--kind", "gpu", "--max-batch-size", "24"]) == 2
    assert "CUDA graph bucket" in capsys.readouterr().err


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
                                     "queue_timeout_us", "decode_threads", "max_in_flight", "warmup", "checkpoint",
                                     "video_kind", "gpus", "preferred_batch_sizes", "batching_note",
                                     "max_decoded_frames", "max_duration", "max_pixel_rate"}
    assert (ROOT / "triton_repo" / "README.md").is_file()


def test_locator_messages(monkeypatch, tmp_path):
    from squeezetime.serving.triton import TritonServerError, find_tritonserver
    from squeezetime.serving.triton.server import TritonServer

    with pytest.raises(TritonServerError, match="does not exist"):
        find_tritonserver(tmp_path / "nope")
    monkeypatch.setenv("SQUEEZETIME_TRITONSERVER", str(tmp_path / "nope"))
    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.setattr("squeezetime.serving.triton.install.PROJECT_ROOT", tmp_path)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr("squeezetime.serving.triton.install._safe_find", lambda name: False)
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


def test_every_decode_budget_setting_reaches_the_video_and_timeline_models(tmp_path, model):
    """The repository carries the whole DecodeBudget, and the models read back the same budget."""
    from squeezetime.serving.requests import decode_budget
    from squeezetime.video import DecodeBudget

    budget = DecodeBudget(max_pixels=640 * 480, max_frames=5000, max_seconds=7.5, max_decoded_frames=1234,
                          max_duration=99.0, max_pixel_rate=5e7)
    repo = write_repository(tmp_path / "repo", model, options=RepoOptions(budget=budget))
    for name in ("squeezetime_video", "squeezetime_timeline"):
        params = {k: v.string_value for k, v in parse_config(repo / name / "config.pbtxt").parameters.items()}
        assert decode_budget(params) == budget, name
