"""squeezetime.load / Classifier: the one pipeline (video -> clips -> tensor -> backend -> labels), its data
config carried by checkpoints, the backends behind it, timm's head methods, and errors a caller can act on."""
from __future__ import annotations

import subprocess
import sys
from dataclasses import replace

import numpy as np
import pytest
import torch

import squeezetime
from squeezetime import ops
from squeezetime.backends import BackendError
from squeezetime.data_config import DataConfig
from squeezetime.video.views import View

from support.reference import GOLDEN_CENTRED_REL_L2, GOLDEN_REL_L2, centred_relative_l2, reference_cases, relative_l2


@pytest.fixture(scope="module")
def classifier():
    return squeezetime.load(squeezetime.DEMO)


def test_default_backend_is_optimized_when_the_extension_is_built(classifier):
    assert ops.extension_available(), ops.extension_error()
    assert classifier.backend.name == "optimized"
    assert classifier.class_names == squeezetime.demo_model().class_names
    assert classifier.data_config == DataConfig()  # the demo checkpoint carries the official pipeline
    assert "optimized" in repr(classifier) and "8 classes" in repr(classifier)


@pytest.mark.slow
def test_classify_agrees_with_predict_and_with_clips(classifier, demo_videos):
    path, truth = demo_videos[3]
    top = classifier.classify(path, topk=3)
    assert top[0][0] == truth and len(top) == 3 and top[0][1] >= top[1][1] >= top[2][1]
    via_predict = squeezetime.predict(squeezetime.demo_model(), path, topk=3)
    assert [l for l, _ in via_predict] == [l for l, _ in top]
    assert np.allclose([p for _, p in via_predict], [p for _, p in top], atol=1e-6)
    clips = classifier.clips(path, "10x3")
    assert clips.shape == (30, 16, 224, 224, 3) and clips.dtype == np.uint8
    assert classifier.classify(clips, topk=3) == classifier.classify(path, views="10x3", topk=3)


@pytest.mark.slow
def test_classify_many_batches_videos_and_keeps_errors_in_place(classifier, demo_videos):
    paths = [p for p, _ in demo_videos[:5]]
    alone = [classifier.classify(p, views="10x3", topk=2) for p in paths]
    many = classifier.classify_many(paths[:2] + [b"not a video"] + paths[2:], views="10x3", topk=2,
                                    errors="return")
    assert isinstance(many[2], squeezetime.VideoError)
    for got, want in zip(many[:2] + many[3:], alone):
        assert [l for l, _ in got] == [l for l, _ in want]
        assert np.allclose([p for _, p in got], [p for _, p in want], atol=1e-5)
    with pytest.raises(squeezetime.VideoError):
        classifier.classify_many([paths[0], b""])


def test_scores_are_batched_and_same_as_one_call(classifier, demo_videos):
    clips = classifier.clips(demo_videos[0][0], "10x3")[:11]
    batched = squeezetime.Classifier(classifier.backend, classifier.data_config, classifier.class_names,
                                     batch_size=4).scores(clips)
    whole = squeezetime.Classifier(classifier.backend, classifier.data_config, classifier.class_names,
                                   batch_size=16).scores(clips)
    assert batched.shape == (11, 8) and torch.allclose(batched, whole, atol=1e-5)
    assert torch.allclose(batched.sum(1), torch.ones(11), atol=1e-5)


@pytest.mark.parametrize("backend", ["eager", "optimized", "auto"])
def test_backends_agree_with_the_official_network_on_the_goldens(reference_dir, backend):
    case = "k400_w025_224"  # the 224x224 golden: the clips a Classifier takes (the 160 one is a model test)
    io = torch.load(reference_dir / f"{case}.io.pt", weights_only=True)
    c = squeezetime.load(reference_dir / f"{case}.pth", backend=backend, batch_size=1)
    logits = c.infer(io["frames"]).logits
    assert relative_l2(logits, io["expected"]) <= GOLDEN_REL_L2
    assert centred_relative_l2(logits, io["expected"]) <= GOLDEN_CENTRED_REL_L2


def test_official_checkpoint_gets_the_official_data_config(reference_dir):
    case = next(iter(reference_cases()))
    model = squeezetime.load_checkpoint(reference_dir / f"{case}.pth")
    assert model.data_config == DataConfig()
    assert model.data_config.view("1x1") == View(1, 256, 224, False)
    assert model.data_config.view("10x3") == View(10, 224, 224, True)


def test_data_config_is_saved_and_read_back(tmp_path, demo_model):
    custom = replace(DataConfig(), frame_interval=2, default_views="fast",
                     views={"fast": View(2, 240, 224, False), "1x1": View(1, 256, 224, False)})
    model = squeezetime.demo_model()
    model.data_config = custom
    squeezetime.save_checkpoint(model, tmp_path / "m.pth")
    reloaded = squeezetime.load_checkpoint(tmp_path / "m.pth")
    assert reloaded.data_config == custom
    c = squeezetime.load(reloaded)
    assert c.data_config.default_views == "fast"
    assert c.clips(squeezetime.synthetic.make_video(0, seed=3)).shape == (2, 16, 224, 224, 3)
    assert DataConfig.from_dict(custom.to_dict()) == custom
    with pytest.raises(squeezetime.CheckpointError, match="unknown fields"):
        DataConfig.from_dict({**custom.to_dict(), "colour": 1})


def test_timm_head_methods(demo_model):
    model = squeezetime.demo_model()
    x = squeezetime.normalize_clip(torch.randint(0, 256, (2, 16, 112, 112, 3), dtype=torch.uint8))
    with torch.no_grad():
        features = model.forward_features(x)
        assert torch.equal(model.forward_head(features), model(x))
        assert model.forward_head(features, pre_logits=True).shape == (2, model.get_classifier().in_features)
    model.reset_classifier(3, ["a", "b", "c"])
    assert model.get_classifier().out_features == 3 and model.num_classes == 3
    c = squeezetime.load(model, backend="eager")
    assert c.class_names == ["a", "b", "c"] and c.scores(torch.zeros(1, 16, 224, 224, 3, dtype=torch.uint8)).shape == (1, 3)
    model.reset_classifier(0)
    assert model.get_classifier() is None and model(x).dim() == 4
    with pytest.raises(squeezetime.InputError, match="no classification head"):
        squeezetime.load(model)


def test_predict_rebuilds_its_classifier_when_weights_change(demo_videos):
    model = squeezetime.demo_model()
    path = demo_videos[0][0]
    before = squeezetime.predict(model, path, topk=1)[0][0]
    other = next(i for i, name in enumerate(model.class_names) if name != before)
    with torch.no_grad():
        model.cls_head.fc_cls.bias[other] += 100.0  # in place: the cached optimised module must not be reused
    assert squeezetime.predict(model, path, topk=1)[0][0] == model.class_names[other]


@pytest.mark.parametrize("call, error, message", [
    (lambda: squeezetime.load(42), squeezetime.InputError, "checkpoint path"),
    (lambda: squeezetime.load("demo", backend="tensorrt-please"), BackendError, "unknown backend"),
    (lambda: squeezetime.load("demo", dtype="int4"), BackendError, "unknown dtype"),
    (lambda: squeezetime.load("demo", batch_size=0), squeezetime.InputError, "batch_size"),
    (lambda: squeezetime.load("demo", threads=0), squeezetime.InputError, "threads"),
    (lambda: squeezetime.load("demo", class_names=["x"]), squeezetime.InputError, "1 class names"),
    (lambda: squeezetime.load("/nonexistent.pth"), squeezetime.CheckpointError, "cannot read"),
])
def test_load_errors(call, error, message):
    with pytest.raises(error, match=message) as info:
        call()
    assert isinstance(info.value, squeezetime.SqueezeTimeError)


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the error on a machine without a GPU")
def test_cuda_without_gpu_is_a_clear_error():
    with pytest.raises(BackendError, match="no CUDA GPU"):
        squeezetime.load("demo", device="cuda")


def test_request_errors(classifier):
    with pytest.raises(squeezetime.InputError, match="topk"):
        classifier.classify(np.zeros((1, 16, 224, 224, 3), np.uint8), topk=0)
    with pytest.raises(squeezetime.InputError, match="16 frames"):
        classifier.scores(np.zeros((1, 8, 224, 224, 3), np.uint8))
    with pytest.raises(squeezetime.InputError, match="224x224"):
        classifier.scores(np.zeros((1, 16, 112, 112, 3), np.uint8))
    with pytest.raises(squeezetime.InputError, match="uint8"):
        classifier.scores(np.zeros((1, 16, 224, 224, 3), np.float32))
    with pytest.raises(squeezetime.InputError, match="unknown views"):
        classifier.clips(b"whatever", views="3x3")


@pytest.mark.slow
def test_without_the_extension_auto_is_eager_and_optimized_refuses():
    code = ("import squeezetime, warnings; warnings.simplefilter('ignore');"
            "print(squeezetime.load('demo').backend.name);"
            "\ntry:\n    squeezetime.load('demo', backend='optimized')\n"
            "except squeezetime.BackendError as e:\n    print('refused:', e)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300,
                         env={**__import__("os").environ, "SQUEEZETIME_DISABLE_EXT": "1"})
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert lines[0] == "eager" and lines[1].startswith("refused: the optimized backend needs the C++ extension")
