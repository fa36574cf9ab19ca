"""Export formats (ExportedProgram, ONNX, TorchScript): dynamic batch, round trip, parity with eager.

Parity: the float32 golden tolerance of ../shared/reference (relative L2 <= 1e-5, batch-centred <= 1e-3)
against the float64 golden logits, and against the eager model at batch 1 and 5 through the same artifact.
"""
import json

import pytest
import torch

import squeezetime
from squeezetime.export import graph as G
from squeezetime.export.exported_program import decompose, export_program, load_program, save_program

from support.export import REDUCED_REL_L2, assert_golden, assert_matches_eager, golden_io, golden_model
from support.reference import relative_l2

pytestmark = pytest.mark.slow  # exports the network (ONNX, ExportedProgram, TorchScript)


@pytest.fixture(scope="module")
def model():
    return golden_model()


@pytest.fixture(scope="module")
def io():
    return golden_io()


@pytest.fixture(scope="module")
def clips():
    return {b: G.example_clip(b, seed=b) for b in (1, 5)}


def op_names(program) -> set[str]:
    return {str(n.target) for n in program.graph.nodes if n.op == "call_function"}


# --- the graph -------------------------------------------------------------------------------------------

def test_folded_graph_matches_golden(model, io):
    graph = G.serving_graph(model)
    assert not any(isinstance(m, torch.nn.modules.batchnorm._BatchNorm) for m in graph.modules())
    with torch.inference_mode():
        logits, probs = graph(io["frames"])
    assert logits.dtype == probs.dtype == torch.float32
    assert_golden(logits, io["expected"])


def test_folding_covers_basic_blocks_with_trained_statistics():
    """ResNet-18 layout (BasicBlock: BN after both CTL modules, pos-embed resized) with non-trivial BN stats."""
    model = squeezetime.create_model("hmdb51", widen_factor=0.25, depth=18)
    model.train()
    with torch.no_grad():
        for _ in range(2):
            model(torch.randn(2, 3, 16, 64, 64))
    model.eval()
    folded = G.fold_for_inference(model)
    x = torch.randn(2, 3, 16, 224, 224)
    with torch.inference_mode():
        assert relative_l2(folded(x), model(x).double()) <= 1e-5


def test_export_and_optimize_fold_to_the_same_weights():
    """One batch-norm folding (models.folding) for both: the exported graph's convolutions hold the weights of
    squeezetime.optimize's, in float32."""
    model = squeezetime.create_model("k400", widen_factor=0.125, depth=50)
    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.uniform_(-0.5, 0.5), m.running_var.uniform_(0.5, 2.0)
    model.eval()
    folded = G.fold_for_inference(model, image_size=64).backbone.net
    opt = squeezetime.optimize(model)
    assert torch.equal(folded.conv1.weight, opt.stem.weight) and torch.equal(folded.conv1.bias, opt.stem.bias)
    block, fast = folded.layer2[0], opt.blocks[3]
    ioi = block.conv2.spatial_conv
    pairs = [(block.conv1, fast.conv1), (block.conv3, fast.conv3), (block.shortcut_conv, fast.shortcut),
             (block.downsample, fast.downsample), (block.conv2.temporal_conv, fast.ctl.temporal),
             (ioi.short_conv, fast.ctl.short), (ioi.glo_conv[0], fast.ctl.glo0), (ioi.glo_conv[3], fast.ctl.glo3)]
    for conv, fast_conv in pairs:
        assert torch.equal(conv.weight, fast_conv.weight) and torch.equal(conv.bias, fast_conv.bias)
    gate = block.conv2.param_conv[1]
    assert torch.equal(gate.weight.flatten(1), fast.ctl.gate_w1) and torch.equal(gate.bias, fast.ctl.gate_b1)


def test_serving_graph_normalises_with_the_squeeze_time_reference():
    """The unfused graph's input stage is the operator's ATen definition: the same bits as ops.squeeze_time."""
    from squeezetime import ops

    class Capture(torch.nn.Module):
        def forward(self, x):
            self.x = x
            return x.flatten(1)[:, :4]

    clip = G.example_clip(2, image_size=32)
    graph = G.ServingGraph(Capture())
    graph(clip)
    assert torch.equal(graph.model.x, ops.squeeze_time(clip).view(2, 3, 16, 32, 32))
    assert torch.equal(graph.model.x, squeezetime.normalize_clip(clip))


@pytest.mark.parametrize("precision", ["bf16"])
def test_reduced_precision_graph_within_stated_tolerance(model, io, precision):
    with torch.inference_mode():
        logits, _ = G.serving_graph(model, precision)(io["frames"])
    assert logits.dtype == torch.float32
    assert relative_l2(logits, io["expected"]) <= REDUCED_REL_L2[precision]
    assert torch.equal(logits.argmax(1), io["expected"].argmax(1))


# --- ExportedProgram --------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def program_path(model, tmp_path_factory):
    return save_program(export_program(model, max_batch=64), tmp_path_factory.mktemp("ep") / "squeezetime.pt2")


def test_exported_program_round_trip_golden_and_dynamic_batch(program_path, model, io, clips):
    program = load_program(program_path)
    assert [s.arg.name for s in program.graph_signature.input_specs if s.kind.name == "USER_INPUT"] == ["clip"]
    (batch_range,) = program.range_constraints.values()
    assert (int(batch_range.lower), int(batch_range.upper)) == (1, 64)
    ops = op_names(program)
    assert not any("batch_norm" in o or "upsample" in o or "interpolate" in o for o in ops), ops
    module = program.module()
    with torch.inference_mode():
        logits, _ = module(io["frames"])
        assert_golden(logits, io["expected"])
        for b, clip in clips.items():
            assert_matches_eager(model, clip, *module(clip))


def test_custom_operators_pass_through_or_decompose(model, clips):
    """The kernels issue's torch.ops.squeezetime.squeeze_time: kept (fake kernel) by torch.export, replaced
    by plain ATen for the exporters that cannot take it; same numbers either way."""
    if not G._has_custom_op("squeeze_time"):
        pytest.skip("torch.ops.squeezetime is not built here (python setup.py build_ext --inplace)")
    program = export_program(model, max_batch=8, fused_input=True)
    assert G.custom_ops_in(program.graph_module) == ["squeezetime.squeeze_time.default"]
    plain = decompose(program)
    assert G.custom_ops_in(plain.graph_module) == []
    with torch.inference_mode():
        for module in (program.module(), plain.module()):
            assert_matches_eager(model, clips[5], *module(clips[5]))


def test_ctl_combine_decomposition_matches_the_fused_operator():
    from squeezetime.optimize import optimize

    if not G._has_custom_op("ctl_combine"):
        pytest.skip("torch.ops.squeezetime is not built here (python setup.py build_ext --inplace)")
    model = squeezetime.create_model("k400", widen_factor=0.125)
    x = squeezetime.normalize_clip(G.example_clip(2))
    program = torch.export.export(optimize(model, fused=True), (x,), strict=False)
    assert "squeezetime.ctl_combine.default" in G.custom_ops_in(program.graph_module)
    plain = decompose(program)
    assert G.custom_ops_in(plain.graph_module) == []
    with torch.inference_mode():
        assert relative_l2(plain.module()(x), model(x).double()) <= 1e-5


# --- ONNX ------------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def onnx_path(model, tmp_path_factory):
    from squeezetime.export.onnx import export_onnx

    return export_onnx(model, tmp_path_factory.mktemp("onnx") / "squeezetime.onnx", max_batch=64)


def test_onnx_model_io_opset_and_dynamic_batch(onnx_path):
    import onnx

    proto = onnx.load(onnx_path)
    onnx.checker.check_model(proto, full_check=True)
    assert max(o.version for o in proto.opset_import if o.domain in ("", "ai.onnx")) >= 18

    def spec(v):
        return v.name, v.type.tensor_type.elem_type, [d.dim_param or d.dim_value for d in v.type.tensor_type.shape.dim]

    assert [spec(v) for v in proto.graph.input] == [("CLIP", onnx.TensorProto.UINT8, ["batch", 16, 224, 224, 3])]
    assert [spec(v) for v in proto.graph.output] == [("LOGITS", onnx.TensorProto.FLOAT, ["batch", 400]),
                                                     ("PROBS", onnx.TensorProto.FLOAT, ["batch", 400])]
    assert not [n.op_type for n in proto.graph.node if n.domain not in ("", "ai.onnx")]


def test_onnxruntime_matches_golden_and_eager(onnx_path, model, io, clips):
    from squeezetime.export.onnx import onnx_session, run_onnxruntime

    session = onnx_session(onnx_path)
    logits, _ = run_onnxruntime(session, io["frames"])
    assert_golden(logits, io["expected"])
    for b, clip in clips.items():
        assert_matches_eager(model, clip, *run_onnxruntime(session, clip))


# --- TorchScript -----------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def torchscript_path(model, tmp_path_factory):
    from squeezetime.export.torchscript import export_torchscript

    return export_torchscript(model, tmp_path_factory.mktemp("ts") / "squeezetime.pt")


def test_torchscript_round_trip_golden_and_dynamic_batch(torchscript_path, model, io, clips):
    from squeezetime.export.torchscript import load_torchscript

    module = load_torchscript(torchscript_path)
    with torch.inference_mode():
        logits, _ = module(io["frames"])
        assert_golden(logits, io["expected"])
        for b, clip in clips.items():
            assert_matches_eager(model, clip, *module(clip))


# --- command line ----------------------------------------------------------------------------------------

def run_cli(*argv) -> int:
    from squeezetime.cli import main

    return main(list(argv))


def test_cli_exports_torchscript_with_libtorch_triton_model(tmp_path, capsys, io):
    from squeezetime.export.triton_models import parse_config
    from squeezetime.export.torchscript import load_torchscript

    checkpoint = str(golden_case_path())
    out, repo = tmp_path / "m.pt", tmp_path / "repo"
    assert run_cli("export", "--checkpoint", checkpoint, "--format", "torchscript", "--out", str(out),
                   "--batch", "1:4:16", "--triton-repo", str(repo)) == 0
    report = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert report["artifact"] == str(out) and report["batch"] == [1, 4, 16]
    config = parse_config((repo / "squeezetime_libtorch" / "config.pbtxt").read_text())
    assert config.platform == "pytorch_libtorch" and config.max_batch_size == 16
    with torch.inference_mode():
        logits, _ = load_torchscript(repo / "squeezetime_libtorch" / "1" / "model.pt")(io["frames"])
    assert_golden(logits, io["expected"])


def test_cli_exported_program(tmp_path, capsys, io):
    out = tmp_path / "m.pt2"
    assert run_cli("export", "--checkpoint", str(golden_case_path()), "--format", "exported-program",
                   "--out", str(out), "--batch", "1:2:8") == 0
    program = load_program(out)
    (batch_range,) = program.range_constraints.values()
    assert int(batch_range.upper) == 8
    with torch.inference_mode():
        assert_golden(program.module()(io["frames"])[0], io["expected"])


@pytest.mark.parametrize("argv,message", [
    (["--format", "tensorrt", "--out", "x.plan"], "squeezetime[tensorrt]"),
    (["--format", "onnx", "--out", "x.onnx", "--batch", "8:4:2"], "MIN:OPT:MAX"),
    (["--format", "exported-program", "--triton-repo", "repo"], "not a Triton model"),
    (["--format", "onnx"], "--out"),
])
def test_cli_errors_are_one_clear_line(argv, message, capsys, tmp_path, monkeypatch):
    import sys

    monkeypatch.chdir(tmp_path)
    monkeypatch.setitem(sys.modules, "torch_tensorrt", None)  # as on every machine of this project
    assert run_cli("export", "--checkpoint", str(golden_case_path()), *argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("error: ") and message in err[-1]


def golden_case_path():
    from support.export import GOLDEN_CASE
    from support.reference import REFERENCE

    return REFERENCE / f"{GOLDEN_CASE}.pth"
