"""The embedded demo model classifies held-out synthetic videos, and it needs frame order to do so."""
import numpy as np
import pytest
import torch

import squeezetime
from squeezetime.predict import clip_probabilities
from squeezetime.synthetic import CLASSES, REVERSED, make_clip

pytestmark = pytest.mark.slow  # classifies hundreds of generated clips

HELD_OUT_SEED = 424242  # training draws from seed 0's stream, validation from 10000+/20000+


def test_demo_model_is_small_and_named():
    model = squeezetime.demo_model()
    assert model.class_names == list(CLASSES)
    assert not model.training
    assert sum(p.numel() for p in model.parameters()) < 3_000_000


def test_demo_videos_classified_correctly(demo_model, demo_videos):
    """Every class, all four containers, through the full video -> labels path."""
    predictions = [squeezetime.predict(demo_model, path, topk=1)[0][0] for path, _ in demo_videos]
    truths = [truth for _, truth in demo_videos]
    assert set(truths) == set(CLASSES)
    accuracy = np.mean([p == t for p, t in zip(predictions, truths)])
    assert accuracy >= 0.95, list(zip(truths, predictions))


def test_held_out_clip_accuracy(demo_model):
    rng = np.random.default_rng(HELD_OUT_SEED)
    labels = np.arange(64) % len(CLASSES)
    clips = np.stack([make_clip(int(label), rng) for label in labels])
    with torch.inference_mode():
        logits = torch.cat([demo_model(squeezetime.normalize_clip(clips[i:i + 16])) for i in range(0, 64, 16)])
    accuracy = float((logits.argmax(1).numpy() == labels).mean())
    assert accuracy >= 0.95


@pytest.mark.parametrize("label", range(len(CLASSES)))
def test_reversing_frames_flips_the_prediction(demo_model, label):
    """Reversed time turns left into right, clockwise into counter-clockwise, zoom in into zoom out."""
    clip = make_clip(label, np.random.default_rng(HELD_OUT_SEED + label))
    forward = clip_probabilities(demo_model, clip[None])
    backward = clip_probabilities(demo_model, clip[::-1].copy()[None])
    assert int(forward.argmax()) == label
    assert int(backward.argmax()) == REVERSED[label]


def test_10x3_views_agree_with_1x1(demo_model, demo_videos):
    path, truth = demo_videos[0]
    assert squeezetime.predict(demo_model, path, views="10x3", topk=1)[0][0] == truth


def test_predict_returns_sorted_probabilities(demo_model, demo_videos):
    top = squeezetime.predict(demo_model, demo_videos[1][0], topk=8)
    probs = [p for _, p in top]
    assert len(top) == 8 and probs == sorted(probs, reverse=True)
    assert abs(sum(probs) - 1.0) < 1e-4
    with pytest.raises(squeezetime.InputError, match="topk"):
        squeezetime.predict(demo_model, demo_videos[1][0], topk=0)
