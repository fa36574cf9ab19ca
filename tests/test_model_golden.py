"""The model is the official network: golden logits (float64 reference) and checkpoint key manifests."""
import pytest
import torch

import squeezetime
from squeezetime.models.checkpoint import load_checkpoint

from support.reference import (GOLDEN_CENTRED_REL_L2, GOLDEN_REL_L2, REFERENCE, centred_relative_l2,
                               reference_cases, relative_l2)


def read_manifest(arch: str) -> dict[str, tuple[tuple[int, ...], str]]:
    rows = (REFERENCE / f"manifest_{arch}.tsv").read_text().splitlines()[1:]
    manifest = {}
    for row in rows:
        key, shape, dtype = row.split("\t")
        manifest[key] = (() if shape == "-" else tuple(int(s) for s in shape.split("x")), dtype)
    return manifest


@pytest.mark.parametrize("case", sorted(reference_cases()))
def test_golden_logits_float32(case, reference_dir):
    spec = reference_cases()[case]
    model = load_checkpoint(reference_dir / f"{case}.pth")
    assert model.config["widen_factor"] == spec["widen_factor"]
    io = torch.load(reference_dir / f"{case}.io.pt", weights_only=True)
    assert tuple(io["frames"].shape) == tuple(spec["frames_shape"])
    with torch.inference_mode():
        logits = model(squeezetime.normalize_clip(io["frames"]))
    assert tuple(logits.shape) == tuple(spec["output_shape"])
    assert relative_l2(logits, io["expected"]) <= GOLDEN_REL_L2
    assert centred_relative_l2(logits, io["expected"]) <= GOLDEN_CENTRED_REL_L2


def test_golden_detects_a_wrong_channel_fold(reference_dir):
    """The tolerance is tight enough to catch the mistakes the README lists (here: t*C + c folding)."""
    model = load_checkpoint(reference_dir / "k400_w025_224.pth")
    io = torch.load(reference_dir / "k400_w025_224.io.pt", weights_only=True)
    x = squeezetime.normalize_clip(io["frames"])
    wrong = x.transpose(1, 2).reshape(x.shape).contiguous()  # channel index t*3 + c instead of c*T + t
    with torch.inference_mode():
        logits = model(wrong)
    assert centred_relative_l2(logits, io["expected"]) > GOLDEN_CENTRED_REL_L2


@pytest.mark.parametrize("arch", ["k400", "k600", "hmdb51", "ava"])
def test_state_dict_matches_official_manifest(arch, reference_dir):
    manifest = read_manifest(arch)
    state = squeezetime.create_model(arch).state_dict()
    assert list(state) == list(manifest)
    for key, tensor in state.items():
        shape, dtype = manifest[key]
        assert tuple(tensor.shape) == shape, key
        assert str(tensor.dtype).replace("torch.", "") == dtype, key


def test_ava_backbone_returns_time_split_features():
    model = squeezetime.create_model("ava", widen_factor=0.25)
    with torch.inference_mode():
        features = model(torch.randn(1, 3, 16, 160, 160))
    # stage 4 keeps stride 1: 160 / 16 = 10; 512 channels at width 0.25 -> 512 / 16 per time step
    assert tuple(features.shape) == (1, 512 // 16, 16, 10, 10)


@pytest.mark.parametrize("arch,classes", [("k400", 400), ("k600", 600), ("hmdb51", 51)])
def test_named_configs_ship_class_names(arch, classes):
    model = squeezetime.create_model(arch, widen_factor=0.25)
    assert len(model.class_names) == classes
    with torch.inference_mode():
        assert tuple(model(torch.randn(2, 3, 16, 112, 112)).shape) == (2, classes)


def test_unknown_arch_is_a_clear_error():
    with pytest.raises(ValueError, match="unknown arch"):
        squeezetime.create_model("k700")


def test_normalize_clip_layout_and_values():
    frames = torch.randint(0, 256, (16, 8, 8, 3), dtype=torch.uint8)
    x = squeezetime.normalize_clip(frames)
    assert x.shape == (1, 3, 16, 8, 8) and x.dtype == torch.float32
    mean, std = torch.tensor(squeezetime.MEAN), torch.tensor(squeezetime.STD)
    expected = ((frames.double() - mean.double()) / std.double()).permute(3, 0, 1, 2)[None]
    assert torch.allclose(x.double(), expected, atol=1e-6)
    with pytest.raises(squeezetime.InputError, match="uint8"):
        squeezetime.normalize_clip(frames.float())
    with pytest.raises(squeezetime.InputError, match="shape"):
        squeezetime.normalize_clip(frames[..., :2])
