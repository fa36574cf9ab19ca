"""squeezetime.optimize(): the optimised inference path is the official network (golden tolerance in float32),
within a stated tolerance in bfloat16, and composes with torch.compile."""
import re

import pytest
import torch

import squeezetime
from squeezetime import ops
from squeezetime.optimize import OptimizedSqueezeTime

from support.reference import (GOLDEN_CENTRED_REL_L2, GOLDEN_REL_L2, REFERENCE, centred_relative_l2,
                               reference_cases, relative_l2)

# bfloat16 (8-bit mantissa) through a 50-layer network: relative L2 of the logits vs float64. Measured
# 3.1e-3 to 3.6e-3 on the public cases; 2e-2 leaves margin and still rejects real mistakes (those move
# the float32 logits by >= 2.7e-5 relative, but e.g. a missing gate or BGR input move them by > 5e-2).
BF16_REL_L2 = 2e-2
FUSED = [True, False] if ops.extension_available() else [False]


def golden(case):
    model = squeezetime.load_checkpoint(REFERENCE / f"{case}.pth")
    io = torch.load(REFERENCE / f"{case}.io.pt", weights_only=True)
    return model, io["frames"], io["expected"]


@pytest.mark.parametrize("fused", FUSED)
@pytest.mark.parametrize("case", sorted(reference_cases()))
def test_float32_is_within_golden_tolerance(case, fused, reference_dir):
    model, frames, expected = golden(case)
    opt = squeezetime.optimize(model, fused=fused)
    assert isinstance(opt, OptimizedSqueezeTime)
    with torch.inference_mode():
        logits = opt(squeezetime.normalize_clip(frames))
        from_frames = opt.forward_frames(frames)
    assert logits.dtype == torch.float32 and logits.shape == expected.shape
    assert relative_l2(logits, expected) <= GOLDEN_REL_L2
    assert centred_relative_l2(logits, expected) <= GOLDEN_CENTRED_REL_L2
    assert relative_l2(from_frames, expected) <= GOLDEN_REL_L2
    assert centred_relative_l2(from_frames, expected) <= GOLDEN_CENTRED_REL_L2


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_from_frames_is_forward_bit_for_bit(dtype):
    """forward_frames (uint8 straight into the stem's channels-last buffer, what the backends call) and
    forward (normalised float clips) give the same logits, bit for bit, one clip and a batch."""
    model = squeezetime.create_model("k400", widen_factor=0.125).eval()
    opt = squeezetime.optimize(model, dtype=dtype)
    frames = torch.randint(0, 256, (3, 16, 64, 64, 3), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    with torch.inference_mode():
        for clips in (frames[:1], frames):
            assert torch.equal(opt.forward_frames(clips), opt(squeezetime.normalize_clip(clips)))


@pytest.mark.parametrize("fused", FUSED)
@pytest.mark.parametrize("case", sorted(reference_cases()))
def test_bfloat16_within_stated_tolerance_and_same_top1(case, fused, reference_dir):
    model, frames, expected = golden(case)
    opt = squeezetime.optimize(model, dtype=torch.bfloat16, fused=fused)
    with torch.inference_mode():
        logits = opt(squeezetime.normalize_clip(frames))
        reference = model(squeezetime.normalize_clip(frames))
    assert logits.dtype == torch.float32
    assert relative_l2(logits, expected) <= BF16_REL_L2
    assert torch.equal(logits.argmax(1), reference.argmax(1))


def test_golden_tolerance_still_catches_a_wrong_fold_through_optimize(reference_dir):
    model, frames, expected = golden("k400_w025_224")
    x = squeezetime.normalize_clip(frames)
    wrong = x.transpose(1, 2).reshape(x.shape).contiguous()
    with torch.inference_mode():
        logits = squeezetime.optimize(model)(wrong)
    assert centred_relative_l2(logits, expected) > GOLDEN_CENTRED_REL_L2


@pytest.mark.parametrize("depth", [18, 50])
@pytest.mark.parametrize("batch", [1, 3])
def test_matches_eager_for_basic_and_bottleneck_blocks_at_any_batch(depth, batch):
    torch.manual_seed(depth + batch)
    model = squeezetime.create_model("k400", widen_factor=0.125, depth=depth)
    for m in model.modules():  # non-trivial batch-norm statistics, so that folding is really exercised
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.uniform_(-0.5, 0.5), m.running_var.uniform_(0.5, 2.0)
            m.weight.data.uniform_(0.5, 1.5), m.bias.data.uniform_(-0.2, 0.2)
    x = torch.randn(batch, 3, 16, 48, 40)
    with torch.inference_mode():
        expected = model(x).double()
        for fused in FUSED:
            for fmt in (torch.channels_last, torch.contiguous_format):
                got = squeezetime.optimize(model, fused=fused, memory_format=fmt)(x)
                assert relative_l2(got, expected) < 1e-5, (fused, fmt)
        # rows are independent: sample 0 alone gives the same logits (gate per sample, not per batch)
        alone = squeezetime.optimize(model)(x[:1])
        assert relative_l2(alone, expected[:1]) < 1e-5


def _trained_bn(model):
    torch.manual_seed(1)
    for m in model.modules():  # non-trivial batch-norm statistics
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.uniform_(-0.5, 0.5), m.running_var.uniform_(0.5, 2.0)
            m.weight.data.uniform_(0.5, 1.5), m.bias.data.uniform_(-0.2, 0.2)
    return model.eval()


def test_folding_maths_in_float64():
    """models.folding: conv + bn as one conv, and the CTL rule (bn after a CTL module into its two branches)."""
    import torch.nn.functional as F

    from squeezetime.models.folding import bn_affine, fold_conv_bn, fold_ctl_bn
    from squeezetime.models.squeezetime import ChannelTimeLearning

    conv, bn = torch.nn.Conv2d(6, 8, 3, padding=1, stride=2).double(), torch.nn.BatchNorm2d(8).double()
    ctl, bn2 = ChannelTimeLearning(8, 8, pos_dim=5).double(), torch.nn.BatchNorm2d(8).double()
    for m in (conv, bn, ctl, bn2):
        _trained_bn(m)
    x = torch.randn(2, 6, 11, 9, dtype=torch.float64)
    scale, shift = bn_affine(bn)
    assert scale.dtype == shift.dtype == torch.float64
    with torch.no_grad():
        torch.testing.assert_close(scale.view(1, -1, 1, 1) * x[:, :1].expand(2, 8, 11, 9) + shift.view(1, -1, 1, 1),
                                   bn(x[:, :1].expand(2, 8, 11, 9)), rtol=1e-12, atol=1e-12)
        w, b = fold_conv_bn(conv, bn)
        assert w.dtype == b.dtype == torch.float64
        torch.testing.assert_close(F.conv2d(x, w, b, 2, 1), bn(conv(x)), rtol=1e-12, atol=1e-12)
        y = torch.randn(2, 8, 10, 10, dtype=torch.float64)
        (tw, tb), (sw, sb) = fold_ctl_bn(ctl, bn2)
        gate = ctl.param_conv(y)
        ioi = ctl.spatial_conv
        folded = F.conv2d(gate * y, tw, tb) + F.conv2d(y, sw, sb, padding=1) * torch.sigmoid(ioi.attention(y * gate))
        torch.testing.assert_close(folded, bn2(ctl(y)), rtol=1e-12, atol=1e-12)


def test_optimize_uses_the_models_folding():
    from squeezetime.models.folding import fold_conv_bn, fold_ctl_bn

    model = _trained_bn(squeezetime.create_model("k400", widen_factor=0.125, depth=18))
    opt = squeezetime.optimize(model)
    net = model.backbone.net
    assert torch.equal(opt.stem.weight, fold_conv_bn(net.conv1, net.bn1)[0].float())
    block = net.layer1[0]
    (tw, tb), (sw, sb) = fold_ctl_bn(block.conv1, block.bn1)
    ctl = opt.blocks[0].ctl1
    assert torch.equal(ctl.temporal.weight, tw.float()) and torch.equal(ctl.temporal.bias, tb.float())
    assert torch.equal(ctl.short.weight, sw.float()) and torch.equal(ctl.short.bias, sb.float())


def test_ava_backbone_features():
    model = squeezetime.create_model("ava", widen_factor=0.125)
    x = torch.randn(1, 3, 16, 64, 64)
    with torch.inference_mode():
        expected = model(x)
        got = squeezetime.optimize(model)(x)
    assert got.shape == expected.shape
    assert relative_l2(got, expected.double()) < 1e-5


def test_optimize_rejects_bad_arguments():
    model = squeezetime.create_model("k400", widen_factor=0.125)
    with pytest.raises(ValueError, match="dtype"):
        squeezetime.optimize(model, dtype=torch.float64)
    with pytest.raises(TypeError, match="SqueezeTime"):
        squeezetime.optimize(torch.nn.Linear(2, 2))


def test_positional_embeddings_resized_once_per_size():
    model = squeezetime.create_model("k400", widen_factor=0.125)
    opt = squeezetime.optimize(model)
    with torch.inference_mode():
        opt(torch.randn(1, 3, 16, 64, 64)), opt(torch.randn(1, 3, 16, 64, 64)), opt(torch.randn(1, 3, 16, 96, 64))
    ctl = opt.blocks[0].ctl
    assert len(ctl._pos_cache) == 2


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_torch_compile_of_the_optimised_model():
    torch._dynamo.reset()
    torch.manual_seed(0)
    model = squeezetime.create_model("k400", widen_factor=0.125, depth=10)
    x = torch.randn(1, 3, 16, 32, 32)
    with torch.inference_mode():
        expected = model(x).double()
        compiled = squeezetime.optimize(model, compile=True)
        got = compiled(x)
    assert relative_l2(got, expected) < 1e-5


@pytest.mark.timeout(300)
def test_bench_command_writes_json_and_png(tmp_path):
    import json

    from squeezetime.cli import main

    out = tmp_path / "bench"
    assert main(["bench", "--widen-factor", "0.125", "--size", "64", "--rounds", "2", "--warmup", "1",
                 "--paths", "eager", "opt-fp32", "opt-bf16", "--no-micro", "--out", str(out)]) == 0
    results = json.loads((out / "bench.json").read_text())
    row = results["latency"]["1"]
    assert set(row) == {"eager", "opt-fp32", "opt-bf16"}
    assert row["eager"]["speedup_vs_eager"] == pytest.approx(1.0)
    assert all(r["median_ms"] > 0 and r["clips_per_s"] > 0 for r in row.values())
    assert (out / "bench.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_network_input_micro_benchmark_times_both_ways_to_the_stem_input():
    from squeezetime.bench.operators import network_input_benchmark

    clip = torch.randint(0, 256, (1, 16, 32, 32, 3), dtype=torch.uint8)
    result = network_input_benchmark(clip, reps=3)
    assert result["shape"] == [1, 16, 32, 32, 3]
    assert result["two_passes_ms"] > 0 and result["one_pass_ms"] > 0
    assert result["speedup"] == pytest.approx(result["two_passes_ms"] / result["one_pass_ms"])


@pytest.mark.slow
def test_bench_peers_writes_json_and_png(tmp_path):
    """`bench --peers` at its smallest: eager (always the reference) and two of our rows, interleaved."""
    import json

    from squeezetime.cli import main

    out = tmp_path / "peers"
    assert main(["bench", "--peers", "--widen-factor", "0.125", "--size", "64", "--rounds", "2", "--warmup", "1",
                 "--batch-sizes", "1", "--rows", "ours eager", "ours optimized fp32", "--out", str(out)]) == 0
    results = json.loads((out / "peers.json").read_text())
    row = results["latency"]["1"]
    assert set(row) == {"eager", "ours eager", "ours optimized fp32"}
    assert row["eager"]["speedup_vs_eager"] == pytest.approx(1.0)
    assert all(r["median_ms"] > 0 and r["per_clip_ms"] == r["median_ms"] for r in row.values())
    assert (out / "peers.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


class _RejectsOneByOneAdd:
    """torch.ops.mkldnn._convolution_pointwise(_) as torch 2.11 behaves: the binary 'add' post-op raises
    'could not create a memory' when the convolution's output is 1x1; everything else is the real op."""

    def __init__(self, real, binary_arg: int):
        self.real, self.binary_arg, self.rejected = real, binary_arg, []
        self.default = getattr(real, "default", None)

    def binary(self, *args):
        x = args[1] if self.binary_arg == 1 else args[0]  # the conv input: 2nd in place, 1st otherwise
        if args[self.binary_arg + 7] == "add" and x.shape[-2:] == (1, 1):
            self.rejected.append(tuple(x.shape))
            raise RuntimeError("could not create a memory")
        return self.real.binary(*args)


@pytest.fixture
def onednn_as_in_torch_2_11(monkeypatch):
    """The private ops replaced by ones that reject what torch 2.11's reject; the once-per-process warning
    and self-test state reset, so that the test sees them afresh."""
    from squeezetime.backends import selftest
    from squeezetime.optimize import onednn

    mk = torch.ops.mkldnn
    fakes = (_RejectsOneByOneAdd(mk._convolution_pointwise, 0), _RejectsOneByOneAdd(mk._convolution_pointwise_, 1))
    monkeypatch.setattr(mk, "_convolution_pointwise", fakes[0])
    monkeypatch.setattr(mk, "_convolution_pointwise_", fakes[1])
    monkeypatch.setattr(onednn, "_warned", [])
    monkeypatch.setattr(selftest, "_passed", {})
    return fakes


@pytest.mark.skipif(not torch.backends.mkldnn.is_available(), reason="no oneDNN in this torch")
def test_a_rejected_private_onednn_call_falls_back_with_one_warning(onednn_as_in_torch_2_11):
    """squeezetime.optimize is public API: where torch's private oneDNN op rejects a shape (torch 2.11: 'add' at
    a 1x1 output, the last stage of a 48x40 input), that conv runs through F.conv2d, with one warning for the
    process, and the result stays the eager one at the golden tolerance."""
    from squeezetime.optimize.onednn import OneDnnFallbackWarning

    model = _trained_bn(squeezetime.create_model("k400", widen_factor=0.125))
    x = torch.randn(2, 3, 16, 48, 40)
    with torch.inference_mode():
        expected = model(x).double()
        opt = squeezetime.optimize(model)
        with pytest.warns(OneDnnFallbackWarning, match=re.escape(f"torch {torch.__version__}'s private")) as w:
            got = opt(x)
        assert len(w) == 1 and relative_l2(got, expected) < GOLDEN_REL_L2
        rejected = sum(len(fake.rejected) for fake in onednn_as_in_torch_2_11)
        assert rejected > 0
        assert relative_l2(opt(x), expected) < GOLDEN_REL_L2  # the same shape again: straight to the fallback
    assert sum(len(fake.rejected) for fake in onednn_as_in_torch_2_11) == rejected


@pytest.mark.skipif(not torch.backends.mkldnn.is_available(), reason="no oneDNN in this torch")
def test_onednn_self_test_covers_the_shape_torch_2_11_rejects(onednn_as_in_torch_2_11):
    from squeezetime.backends.selftest import check_onednn
    from squeezetime.optimize.onednn import OneDnnFallbackWarning

    with pytest.warns(OneDnnFallbackWarning):
        check_onednn(torch.float32)  # passes: the rejected convolutions ran through the public path
    assert any(fake.rejected for fake in onednn_as_in_torch_2_11)
