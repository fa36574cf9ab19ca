"""Checkpoint loading: every official layout, foreign pickled classes, no code execution, strict errors."""
import io
import pickle
import sys
import types
import warnings

import pytest
import torch

import squeezetime
from squeezetime import CheckpointError
from squeezetime.models.checkpoint import infer_config, load_checkpoint, safe_load, save_checkpoint


@pytest.fixture(scope="module")
def official(reference_dir):
    return torch.load(reference_dir / "k400_w025_224.pth", weights_only=True)


def as_bytes(obj) -> bytes:
    buffer = io.BytesIO()
    torch.save(obj, buffer)
    return buffer.getvalue()


def same_weights(model, state) -> bool:
    own = model.state_dict()
    return all(torch.equal(own[k], v) for k, v in state.items() if k in own)


@pytest.mark.parametrize("wrap", ["official", "bare", "model", "module_prefix", "state_dict_only"])
def test_accepted_layouts(official, wrap):
    state = official["state_dict"]
    obj = {
        "official": official,
        "bare": state,
        "model": {"model": state, "epoch": 3},
        "module_prefix": {"state_dict": {"module." + k: v for k, v in state.items()}},
        "state_dict_only": {"state_dict": state},
    }[wrap]
    model = load_checkpoint(as_bytes(obj))
    assert same_weights(model, state)
    assert model.config["widen_factor"] == 0.25 and model.config["pos_dim"] == (56, 28, 14, 7)
    assert len(model.class_names) == 400


@pytest.mark.parametrize("prefix", ["net.", "backbone.net."])
def test_imagenet_backbone_only_file(official, prefix):
    backbone = {prefix + k[len("backbone.net."):]: v for k, v in official["state_dict"].items()
                if k.startswith("backbone.net.")}
    with pytest.warns(UserWarning, match="no classification head"):
        model = load_checkpoint(as_bytes({"model": backbone}), arch="k400")
    assert model.cls_head is not None
    assert torch.equal(model.backbone.net.conv1.weight, official["state_dict"]["backbone.net.conv1.weight"])


def _install_fake_mmengine():
    """Classes with mmengine's import paths, as an official file's ``meta`` pickles them."""
    history = types.ModuleType("mmengine.logging.history_buffer")
    config = types.ModuleType("mmengine.config.config")

    class HistoryBuffer:
        def __init__(self, values):
            self.values = values

    class ConfigDict(dict):
        pass

    HistoryBuffer.__module__, ConfigDict.__module__ = history.__name__, config.__name__
    HistoryBuffer.__qualname__, ConfigDict.__qualname__ = "HistoryBuffer", "ConfigDict"
    history.HistoryBuffer, config.ConfigDict = HistoryBuffer, ConfigDict
    names = ["mmengine", "mmengine.logging", "mmengine.config", history.__name__, config.__name__]
    for name in names[:3]:
        sys.modules.setdefault(name, types.ModuleType(name))
    sys.modules[history.__name__], sys.modules[config.__name__] = history, config
    return HistoryBuffer, ConfigDict, names


def test_mmengine_pickled_meta_loads_without_mmengine(official):
    HistoryBuffer, ConfigDict, names = _install_fake_mmengine()
    meta = {"cfg": ConfigDict(lr=0.1), "message_hub": {"loss": HistoryBuffer([1.0, 2.0])}, "epoch": 100}
    blob = as_bytes({"meta": meta, "state_dict": official["state_dict"], "message_hub": HistoryBuffer([3])})
    for name in names:
        sys.modules.pop(name, None)
    with pytest.raises(Exception):
        torch.load(io.BytesIO(blob), weights_only=True)  # plain safe loading refuses the foreign classes
    model = load_checkpoint(blob)
    assert same_weights(model, official["state_dict"])
    assert "mmengine" not in sys.modules


class _Exploit:
    def __reduce__(self):
        return (exec, ("open(__import__('os').environ['EXPLOIT_MARKER'], 'w').write('pwned')",))


def test_loading_never_executes_code_from_the_file(official, tmp_path, monkeypatch):
    marker = tmp_path / "marker"
    monkeypatch.setenv("EXPLOIT_MARKER", str(marker))
    blob = as_bytes({"state_dict": official["state_dict"], "meta": {"payload": _Exploit()}})
    model = load_checkpoint(blob)  # the payload's global is replaced by an inert placeholder
    assert not marker.exists()
    assert same_weights(model, official["state_dict"])
    raw = pickle.dumps(_Exploit())  # a bare pickle (not a torch file) is refused and does not run either
    with pytest.raises(CheckpointError):
        load_checkpoint(raw)
    assert not marker.exists()


def test_missing_unexpected_and_misshapen_keys_are_named(official):
    state = dict(official["state_dict"])
    del state["backbone.net.layer2.1.conv2.temporal_conv.weight"]
    state["backbone.net.layer9.weight"] = torch.zeros(1)
    state["cls_head.fc_cls.bias"] = torch.zeros(399)
    with pytest.raises(CheckpointError) as err:
        load_checkpoint(as_bytes({"state_dict": state}), arch="k400")
    message = str(err.value)
    assert "1 missing: backbone.net.layer2.1.conv2.temporal_conv.weight" in message
    assert "1 unexpected: backbone.net.layer9.weight" in message
    assert "1 misshapen: cls_head.fc_cls.bias (399,) != (400,)" in message
    with pytest.warns(UserWarning, match="temporal_conv.weight"):
        model = load_checkpoint(as_bytes({"state_dict": state}), arch="k400", strict=False)
    assert torch.equal(model.backbone.net.conv1.weight, state["backbone.net.conv1.weight"])


def test_many_offending_keys_are_summarised(official):
    state = {k: v for k, v in official["state_dict"].items() if "layer3" not in k}
    with pytest.raises(CheckpointError, match=r"missing: .*\(\+\d+ more\)"):
        load_checkpoint(as_bytes(state), arch="k400")


@pytest.mark.parametrize("payload", [b"", b"definitely not a checkpoint", b"PK\x03\x04broken zip"])
def test_not_a_checkpoint(payload, tmp_path):
    path = tmp_path / "file.pth"
    path.write_bytes(payload)
    with pytest.raises(CheckpointError, match="not a readable PyTorch checkpoint"):
        load_checkpoint(path)


def test_not_a_squeezetime_checkpoint():
    with pytest.raises(CheckpointError, match="no SqueezeTime backbone keys"):
        load_checkpoint(as_bytes({"state_dict": {"fc.weight": torch.zeros(2, 2)}}))
    with pytest.raises(CheckpointError, match="non-tensor"):
        load_checkpoint(as_bytes({"state_dict": {"backbone.net.conv1.weight": "text"}}))
    with pytest.raises(CheckpointError, match="cannot read checkpoint"):
        load_checkpoint("/nonexistent/file.pth")


@pytest.mark.parametrize("arch", ["k600", "hmdb51", "ava"])
def test_architecture_inferred_from_keys(arch):
    model = squeezetime.create_model(arch, widen_factor=0.25)
    loaded = load_checkpoint(as_bytes({"state_dict": model.state_dict()}))
    assert loaded.config["num_classes"] == model.config["num_classes"]
    assert loaded.config["spatial_stride"] == model.config["spatial_stride"]
    assert same_weights(loaded, model.state_dict())


def test_infer_depth_and_width():
    model = squeezetime.create_model("k400", depth=18, widen_factor=0.5, num_classes=7)
    config = infer_config(model.state_dict())
    assert (config.depth, config.widen_factor, config.num_classes, config.num_frames) == (18, 0.5, 7, 16)


def test_save_checkpoint_round_trip_keeps_class_names(tmp_path):
    model = squeezetime.create_model("k400", depth=10, widen_factor=0.25, num_classes=3, class_names=["a", "b", "c"])
    save_checkpoint(model, tmp_path / "m.pth")
    torch.load(tmp_path / "m.pth", weights_only=True)  # our own files need no placeholders at all
    loaded = load_checkpoint(tmp_path / "m.pth")
    assert loaded.class_names == ["a", "b", "c"] and same_weights(loaded, model.state_dict())


def test_safe_load_placeholder_records_state():
    HistoryBuffer, _, names = _install_fake_mmengine()
    blob = as_bytes({"h": HistoryBuffer([1, 2])})
    for name in names:
        sys.modules.pop(name, None)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        obj = safe_load(blob)
    assert "HistoryBuffer" in repr(obj["h"]) and obj["h"].state == {"values": [1, 2]}
