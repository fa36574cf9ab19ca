"""The engine backends (onnxruntime, openvino) against the float64 goldens, their on-disk cache, what
``backend="auto"`` picks, and the optimized backend's oneDNN self-test with auto's fallback."""
from __future__ import annotations

import logging

import pytest
import torch

import squeezetime
from squeezetime.backends import BackendError, engine_cache
from squeezetime.backends.auto import auto_order, cpu_flags, cpu_has_native_bf16

from support.reference import GOLDEN_CENTRED_REL_L2, GOLDEN_REL_L2, centred_relative_l2, relative_l2

pytestmark = pytest.mark.slow  # converts the network for ONNX Runtime and OpenVINO

pytest.importorskip("onnxruntime", reason="the onnxruntime backend needs onnxruntime (requirements/main/export.txt)")
pytest.importorskip("openvino", reason="the openvino backend needs openvino (requirements/main/engines.txt)")

CASE = "k400_w025_224"  # the 224x224 golden: the clip size a Classifier feeds its backend
BF16_REL_L2 = 3e-2  # stated tolerance of a bfloat16 engine against the float64 goldens (8-bit mantissa)


@pytest.fixture(scope="module", autouse=True)
def engine_cache_dir(tmp_path_factory):
    """One cache for the module: the ONNX export (slow) is shared by both engines and every test here."""
    with pytest.MonkeyPatch.context() as mp:
        path = tmp_path_factory.mktemp("engine_cache")
        mp.setenv(engine_cache.CACHE_ENV, str(path))
        yield path


@pytest.fixture(scope="module")
def golden(reference_dir):
    io = torch.load(reference_dir / f"{CASE}.io.pt", weights_only=True)
    return reference_dir / f"{CASE}.pth", io["frames"], io["expected"]


@pytest.mark.timeout(900)
@pytest.mark.parametrize("backend", ["onnxruntime", "openvino"])
def test_engines_agree_with_the_official_network_on_the_goldens(golden, backend):
    checkpoint, frames, expected = golden
    c = squeezetime.load(checkpoint, backend=backend, batch_size=2)
    assert c.backend.name == backend and c.backend.dtype == torch.float32
    logits = c.infer(frames).logits
    assert logits.dtype == torch.float32 and logits.shape == expected.shape
    assert relative_l2(logits, expected) <= GOLDEN_REL_L2
    assert centred_relative_l2(logits, expected) <= GOLDEN_CENTRED_REL_L2


@pytest.mark.timeout(900)
def test_openvino_bfloat16_states_what_it_runs(golden, caplog):
    checkpoint, frames, expected = golden
    with caplog.at_level(logging.WARNING, logger="squeezetime"):
        c = squeezetime.load(checkpoint, backend="openvino", dtype="bfloat16", batch_size=2)
    logits = c.infer(frames).logits
    if cpu_has_native_bf16():
        assert c.backend.dtype == torch.bfloat16
        assert relative_l2(logits, expected) <= BF16_REL_L2
    else:  # OpenVINO runs float32 on a CPU without bf16: the backend says so and keeps float32 accuracy
        assert c.backend.dtype == torch.float32
        assert any("no native bfloat16" in r.getMessage() for r in caplog.records)
        assert relative_l2(logits, expected) <= GOLDEN_REL_L2


@pytest.mark.timeout(900)
def test_second_build_reads_the_disk_cache(golden, engine_cache_dir):
    checkpoint = golden[0]
    for backend in ("onnxruntime", "openvino"):
        squeezetime.load(checkpoint, backend=backend)  # converted now, or by an earlier test
        files = {p: p.stat().st_mtime_ns for p in engine_cache_dir.rglob("model.*")}
        again = squeezetime.load(checkpoint, backend=backend).backend
        assert again.from_cache, f"{backend} converted the network again"
        assert {p: p.stat().st_mtime_ns for p in engine_cache_dir.rglob("model.*")} == files
    assert {p.parent.parent.name for p in engine_cache_dir.rglob("model.*")} == {"onnx", "openvino"}


def test_cache_key_changes_with_weights_and_versions(engine_cache_dir):
    model = squeezetime.demo_model()
    dc = model.data_config
    key = engine_cache.cache_key(model, dc.mean, dc.std, 224, openvino="2026.4.1", dtype="torch.float32")
    assert key == engine_cache.cache_key(model, dc.mean, dc.std, 224, openvino="2026.4.1", dtype="torch.float32")
    assert key != engine_cache.cache_key(model, dc.mean, dc.std, 224, openvino="2026.4.1", dtype="torch.bfloat16")
    assert key != engine_cache.cache_key(model, dc.mean, dc.std, 224, openvino="2025.0", dtype="torch.float32")
    assert key != engine_cache.cache_key(model, dc.mean, dc.std, 160, openvino="2026.4.1", dtype="torch.float32")
    assert key != engine_cache.cache_key(model, [0.0, 0.0, 0.0], dc.std, 224, openvino="2026.4.1",
                                         dtype="torch.float32")
    with torch.no_grad():
        model.cls_head.fc_cls.bias[0] += 1e-3  # in place: same shapes, new numbers
    assert key != engine_cache.cache_key(model, dc.mean, dc.std, 224, openvino="2026.4.1", dtype="torch.float32")
    assert engine_cache.cache_root() == engine_cache_dir


@pytest.mark.parametrize("backend, dtype, device, message", [
    ("onnxruntime", "bfloat16", "cpu", "float32 only"),
    ("openvino", "float16", "cpu", "float32 or bfloat16"),
])
def test_engines_refuse_what_they_cannot_run(backend, dtype, device, message):
    with pytest.raises(BackendError, match=message):
        squeezetime.load("demo", backend=backend, dtype=dtype, device=device)


def test_auto_rule():
    cpu, cuda = torch.device("cpu"), torch.device("cuda")
    measured = (["optimized", "onnxruntime", "openvino", "eager"] if "avx512f" in cpu_flags()
                else ["onnxruntime", "openvino", "optimized", "eager"])
    assert auto_order(cpu, torch.float32) == (measured, torch.float32)
    assert auto_order(cuda, torch.float16) == (["optimized", "eager"], torch.float16)
    order, dtype = auto_order(cpu, torch.bfloat16)
    if cpu_has_native_bf16():
        assert (order[0], dtype) == ("openvino", torch.bfloat16)
    else:  # emulated bf16 is slower than float32: auto serves float32
        assert (order, dtype) == (measured, torch.float32)


@pytest.mark.timeout(900)
def test_auto_serves_an_engine_only_once_it_is_converted(golden, tmp_path, monkeypatch):
    checkpoint, frames, expected = golden
    fastest = auto_order(torch.device("cpu"), torch.float32)[0][0]
    squeezetime.load(checkpoint, backend="onnxruntime")  # in the module's cache (converted once for the module)
    squeezetime.load(checkpoint, backend="openvino")
    c = squeezetime.load(checkpoint)
    assert c.backend.name == fastest
    assert relative_l2(c.infer(frames[:1]).logits, expected[:1]) <= GOLDEN_REL_L2
    monkeypatch.setenv(engine_cache.CACHE_ENV, str(tmp_path))  # empty cache: auto never converts
    assert squeezetime.load(checkpoint).backend.name == "optimized"
    assert not any(tmp_path.iterdir())


@pytest.mark.skipif(cpu_has_native_bf16(), reason="checks the float32 fallback of a CPU without bf16")
def test_auto_bfloat16_without_native_bf16_serves_float32(caplog):
    with caplog.at_level(logging.WARNING, logger="squeezetime"):
        c = squeezetime.load("demo", dtype="bfloat16")
    assert (c.backend.name, c.backend.dtype) == ("optimized", torch.float32)
    assert sum("no native bfloat16" in r.getMessage() for r in caplog.records) == 1


class _WrongConvolution:
    """torch.ops.mkldnn._convolution_pointwise as a future torch might break it: every overload 1 % off."""

    def __init__(self, real):
        self.real = real

    def __getattr__(self, name):
        attr = getattr(self.real, name)
        if name in ("default", "binary"):  # the overloads optimize calls; the rest as torch has them
            return lambda *args: attr(*args) * 1.01
        return attr


def _raising(*args):
    raise RuntimeError("_reorder_convolution_weight() got an unexpected argument")


@pytest.mark.skipif(not torch.backends.mkldnn.is_available(), reason="torch without oneDNN: nothing private to check")
@pytest.mark.timeout(900)
@pytest.mark.parametrize("breakage, message", [
    ("wrong", "give wrong numbers"),
    ("raises", "fail under torch"),
])
def test_onednn_self_test_refuses_optimized_and_auto_falls_back(monkeypatch, tmp_path, golden, caplog, breakage,
                                                                message):
    if breakage == "wrong":
        monkeypatch.setattr(torch.ops.mkldnn, "_convolution_pointwise",
                            _WrongConvolution(torch.ops.mkldnn._convolution_pointwise))
    else:
        monkeypatch.setattr(torch.ops.mkldnn, "_reorder_convolution_weight", _raising)
    checkpoint, frames, expected = golden
    monkeypatch.setenv(engine_cache.CACHE_ENV, str(tmp_path))  # no converted engine: auto starts at optimized
    with pytest.raises(BackendError, match=message):
        squeezetime.load(checkpoint, backend="optimized")
    with caplog.at_level(logging.WARNING, logger="squeezetime"):
        c = squeezetime.load(checkpoint)  # auto: the next backend of its rule that is ready
    assert c.backend.name == "eager"
    warnings = [r.getMessage() for r in caplog.records if r.name == "squeezetime" and r.levelno >= logging.WARNING]
    assert len(warnings) == 1 and "optimized failed to build" in warnings[0] and message in warnings[0]
    assert relative_l2(c.infer(frames).logits, expected) <= GOLDEN_REL_L2


def test_onednn_self_test_passes_on_this_torch():
    from squeezetime.backends.selftest import check_onednn

    check_onednn(torch.float32)  # raises OneDnnSelfTestError when torch's private oneDNN functions changed
    assert squeezetime.load("demo", backend="optimized").backend.name == "optimized"
