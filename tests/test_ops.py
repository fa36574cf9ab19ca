"""squeezetime operators: kernels vs pure-PyTorch references (odd sizes, batch > 1, non-contiguous inputs,
every supported dtype), clear errors, fake kernels (torch.compile / torch.export through the ops),
``torch.library.opcheck`` on every operator, and the extension loaded by ``import squeezetime``."""
import pytest
import torch

import squeezetime
from squeezetime import ops

pytestmark = pytest.mark.skipif(not ops.extension_available(),
                                reason=f"C++ extension not built ({ops.extension_error()}); {ops.REINSTALL_HINT}")

DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() and ops.cuda_extension_available() else [])
DTYPES = {"cpu": [torch.float32, torch.bfloat16], "cuda": [torch.float32, torch.float16, torch.bfloat16]}
TOL = {torch.float32: dict(rtol=1e-5, atol=1e-5), torch.bfloat16: dict(rtol=1.6e-2, atol=1.6e-2),
       torch.float16: dict(rtol=2e-3, atol=2e-3)}
CASES = [(d, dt) for d in DEVICES for dt in DTYPES[d]]


def frames(shape, device="cpu", seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, shape, dtype=torch.uint8, generator=g).to(device)


def normalize_by_hand(f, mean=squeezetime.MEAN, std=squeezetime.STD):
    """(float32(x) - mean) / std with float32 tensors, (N, T, H, W, 3) -> (N, 3*T, H, W): the documented formula."""
    n, t, h, w, _ = f.shape
    x = (f.cpu().float() - torch.tensor(mean, dtype=torch.float32)) / torch.tensor(std, dtype=torch.float32)
    return x.permute(0, 4, 1, 2, 3).reshape(n, 3 * t, h, w)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("shape", [(1, 16, 224, 224, 3), (3, 5, 17, 33, 3), (2, 1, 1, 1, 3)])
def test_squeeze_time_is_the_reference_bit_for_bit(device, shape):
    f = frames(shape, device)
    n, t, h, w, _ = shape
    out = ops.squeeze_time(f)
    assert out.dtype == torch.float32 and out.shape == (n, 3 * t, h, w) and out.is_contiguous()
    expected = ops.squeeze_time_reference(f.cpu())
    assert torch.equal(out.cpu(), expected)  # bit-identical: same float32 arithmetic
    assert torch.equal(expected, normalize_by_hand(f))  # python-float constants = float32 tensors, true division
    # channel c*T + t holds colour c of frame t
    assert torch.equal(out[:, 1 * t + t - 1].cpu(), expected.view(n, 3, t, h, w)[:, 1, t - 1])


def test_squeeze_time_every_byte_value_every_channel():
    f = torch.arange(256, dtype=torch.uint8).view(1, 1, 16, 16, 1).expand(2, 3, 16, 16, 3).contiguous()
    assert torch.equal(ops.squeeze_time(f), normalize_by_hand(f))
    assert torch.equal(ops.squeeze_time_reference(f), normalize_by_hand(f))


def test_normalize_clip_is_a_view_of_squeeze_time():
    f = frames((2, 6, 9, 10, 3))
    x = squeezetime.normalize_clip(f)
    assert x.shape == (2, 3, 6, 9, 10) and x.dtype == torch.float32 and x.is_contiguous()
    assert torch.equal(x.reshape(2, 18, 9, 10), ops.squeeze_time(f))
    assert torch.equal(squeezetime.normalize_clip(f[0].numpy()), x[:1])  # (T, H, W, 3) numpy in
    mean, std = (10.0, 20.0, 30.0), (2.0, 3.0, 4.0)
    assert torch.equal(squeezetime.normalize_clip(f, mean, std).reshape(2, 18, 9, 10),
                       ops.squeeze_time_reference(f, mean, std))


@pytest.mark.parametrize("device", DEVICES)
def test_squeeze_time_non_contiguous_and_custom_stats(device):
    base = frames((2, 8, 21, 30, 3), device)
    f = base[:, ::2, :, 3:-4]  # strided over time, cropped in width
    assert not f.is_contiguous()
    mean, std = (1.0, 2.5, 255.0), (0.5, 3.0, 1.5)
    out = ops.squeeze_time(f, mean, std)
    assert torch.equal(out.cpu(), ops.squeeze_time_reference(f.cpu(), mean, std))
    assert torch.equal(out.cpu(), normalize_by_hand(f, mean, std))


def test_squeeze_time_decomposition_is_the_reference():
    """Exported with the operator, decomposed to plain ATen (the reference as decomposition): same bits."""
    from squeezetime.export.exported_program import decompose
    from squeezetime.export.graph import custom_op_decompositions, custom_ops_in

    class Normalise(torch.nn.Module):
        def forward(self, f):
            return torch.ops.squeezetime.squeeze_time(f, [123.675, 116.28, 103.53], [58.395, 57.12, 57.375])

    assert custom_op_decompositions()[torch.ops.squeezetime.squeeze_time.default] is ops.squeeze_time_reference
    f = frames((3, 4, 7, 9, 3))
    batch = torch.export.Dim("batch", min=1, max=8)
    program = torch.export.export(Normalise(), (f,), dynamic_shapes={"f": {0: batch}})
    plain = decompose(program)
    assert custom_ops_in(program.graph_module) == ["squeezetime.squeeze_time.default"]
    assert custom_ops_in(plain.graph_module) == []
    assert not [n for n in plain.graph.nodes if n.op == "get_attr"]  # no tensor constants
    for b in (1, 5):
        fb = frames((b, 4, 7, 9, 3), seed=b)
        assert torch.equal(plain.module()(fb), ops.squeeze_time(fb))


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("shape", [(1, 16, 224, 224, 3), (3, 5, 17, 33, 3), (2, 1, 1, 1, 3)])
def test_squeeze_time_into_channels_last_is_the_reference_bit_for_bit(dtype, shape):
    """squeeze_time.out writes the network's input layout in one pass: the reference, converted, bit for bit
    (bfloat16: rounded once, from the same float32 values)."""
    f = frames(shape)
    mean, std = [100.5, 90.25, 80.0], [50.0, 3.5, 61.25]
    n, t, h, w, _ = shape
    out = torch.full((n, 3 * t, h, w), float("nan"), dtype=dtype).contiguous(memory_format=torch.channels_last)
    result = torch.ops.squeezetime.squeeze_time.out(f, mean, std, out=out)
    reference = ops.squeeze_time_reference(f, mean, std)
    assert result.data_ptr() == out.data_ptr() and torch.equal(out, reference.to(dtype))
    nchw = torch.empty(n, 3 * t, h, w)
    assert torch.equal(torch.ops.squeezetime.squeeze_time.out(f.transpose(2, 3).contiguous().transpose(2, 3),
                                                              mean, std, out=nchw), reference)


def test_squeeze_time_out_errors_are_clear():
    f = frames((1, 2, 3, 4, 3))
    stats = ([0.0] * 3, [1.0] * 3)
    with pytest.raises(RuntimeError, match=r"out must be \(N, 3T, H, W\) = \(1, 6, 3, 4\)"):
        torch.ops.squeezetime.squeeze_time.out(f, *stats, out=torch.empty(1, 6, 4, 3))
    with pytest.raises(RuntimeError, match="float32"):
        torch.ops.squeezetime.squeeze_time.out(f, *stats, out=torch.empty(1, 6, 3, 4, dtype=torch.float64))
    with pytest.raises(RuntimeError, match="channels-last bfloat16"):
        torch.ops.squeezetime.squeeze_time.out(f, *stats, out=torch.empty(1, 6, 3, 4, dtype=torch.bfloat16))
    with pytest.raises(RuntimeError, match="contiguous or channels-last"):
        torch.ops.squeezetime.squeeze_time.out(f, *stats, out=torch.empty(1, 4, 3, 6).transpose(1, 3))
    with pytest.raises(RuntimeError, match="uint8"):
        torch.ops.squeezetime.squeeze_time.out(f.float(), *stats, out=torch.empty(1, 6, 3, 4))


def test_squeeze_time_errors_are_clear():
    with pytest.raises(RuntimeError, match="uint8"):
        torch.ops.squeezetime.squeeze_time(torch.zeros(1, 2, 3, 3, 3), [0.0] * 3, [1.0] * 3)
    with pytest.raises(RuntimeError, match=r"\(N, T, H, W, 3\)"):
        torch.ops.squeezetime.squeeze_time(torch.zeros(1, 2, 3, 3, 4, dtype=torch.uint8), [0.0] * 3, [1.0] * 3)
    with pytest.raises(RuntimeError, match="3 values"):
        torch.ops.squeezetime.squeeze_time(torch.zeros(1, 2, 3, 3, 3, dtype=torch.uint8), [0.0] * 2, [1.0] * 3)


def combine_inputs(shape, dtype, device, memory_format=torch.contiguous_format, residual=True, seed=0):
    g = torch.Generator().manual_seed(seed)
    c = shape[1]
    ts = [(torch.randn(shape, generator=g) * 3).to(device, dtype).contiguous(memory_format=memory_format)
          for _ in range(4 if residual else 3)]
    scale, shift = torch.randn(c, generator=g).to(device), torch.randn(c, generator=g).to(device)
    return ts[0], ts[1], ts[2], scale, shift, (ts[3] if residual else None)


@pytest.mark.parametrize("device,dtype", CASES)
@pytest.mark.parametrize("memory_format", [torch.contiguous_format, torch.channels_last])
@pytest.mark.parametrize("shape", [(1, 64, 56, 56), (3, 19, 7, 5), (2, 1, 9, 1)])
@pytest.mark.parametrize("residual,relu", [(False, True), (True, True), (False, False), (True, False)])
def test_ctl_combine_matches_reference(device, dtype, memory_format, shape, residual, relu):
    t, s, g, scale, shift, r = combine_inputs(shape, dtype, device, memory_format, residual)
    out = ops.ctl_combine(t, s, g, scale, shift, r, relu)
    expected = ops.ctl_combine_reference(t, s, g, scale, shift, r, relu)
    assert out.dtype == dtype and out.shape == t.shape
    torch.testing.assert_close(out.float(), expected.float(), **TOL[dtype])
    if relu:
        assert (out >= 0).all()
    if shape[1] > 1 and memory_format == torch.channels_last:
        assert out.is_contiguous(memory_format=torch.channels_last)  # keeps the fast layout


@pytest.mark.parametrize("device,dtype", CASES)
def test_ctl_combine_non_contiguous_and_channel_slices(device, dtype):
    big = torch.randn(2, 40, 9, 11).to(device, dtype)
    t = big[:, :17]  # channel slice (NCHW)
    s = torch.randn(2, 9, 11, 17).to(device, dtype).permute(0, 3, 1, 2)  # channels-last view
    g = torch.randn(2, 17, 11, 9).to(device, dtype).transpose(2, 3)  # neither layout
    cl = torch.randn(2, 60, 9, 11).to(device, dtype).contiguous(memory_format=torch.channels_last)[:, 5:22]
    scale, shift = torch.randn(17).to(device), torch.randn(17).to(device)
    for args in [(t, s, g, cl), (cl, cl * 2, cl - 1, None), (t, t * 0.5, t + 1, t)]:
        out = ops.ctl_combine(args[0], args[1], args[2], scale, shift, args[3], True)
        expected = ops.ctl_combine_reference(args[0], args[1], args[2], scale, shift, args[3], True)
        torch.testing.assert_close(out.float(), expected.float(), **TOL[dtype])


def test_ctl_combine_formula_by_hand():
    t = torch.tensor([1.0, -2.0]).view(1, 2, 1, 1)
    s = torch.tensor([2.0, 4.0]).view(1, 2, 1, 1)
    g = torch.tensor([0.0, 100.0]).view(1, 2, 1, 1)  # sigmoid 0.5 and 1
    scale, shift = torch.tensor([2.0, 1.0]), torch.tensor([0.5, -3.0])
    out = torch.ops.squeezetime.ctl_combine(t, s, g, scale, shift, None, False).flatten()
    torch.testing.assert_close(out, torch.tensor([2.0 * (1 + 1) + 0.5, 1.0 * (-2 + 4) - 3.0]))
    out = torch.ops.squeezetime.ctl_combine(t, s, g, scale, shift, torch.ones_like(t), True).flatten()
    torch.testing.assert_close(out, torch.tensor([5.5, 0.0]))


def test_ctl_combine_errors_are_clear():
    t = torch.randn(1, 4, 3, 3)
    sc = torch.ones(4)
    with pytest.raises(RuntimeError, match="float32 or bfloat16"):
        torch.ops.squeezetime.ctl_combine(t.double(), t.double(), t.double(), sc, sc, None, True)
    with pytest.raises(RuntimeError, match="float32 or bfloat16"):
        torch.ops.squeezetime.ctl_combine(t.half(), t.half(), t.half(), sc, sc, None, True)
    with pytest.raises(RuntimeError, match="shape"):
        torch.ops.squeezetime.ctl_combine(t, t[:, :3], t, sc, sc, None, True)
    with pytest.raises(RuntimeError, match="dtype|BFloat16|Float"):
        torch.ops.squeezetime.ctl_combine(t, t.bfloat16(), t, sc, sc, None, True)
    with pytest.raises(RuntimeError, match=r"\(C,\)"):
        torch.ops.squeezetime.ctl_combine(t, t, t, torch.ones(3), sc, None, True)


def test_fake_kernels_predict_shape_dtype_and_strides():
    from torch._subclasses.fake_tensor import FakeTensorMode

    real = [torch.randn(2, 8, 5, 6).contiguous(memory_format=torch.channels_last) for _ in range(3)]
    with FakeTensorMode() as mode:
        fake = [mode.from_tensor(x) for x in real]
        sc = mode.from_tensor(torch.ones(8))
        out = torch.ops.squeezetime.ctl_combine(*fake, sc, sc, None, True)
        f = torch.ops.squeezetime.squeeze_time(mode.from_tensor(frames((2, 4, 5, 6, 3))), [0.0] * 3, [1.0] * 3)
    real_out = torch.ops.squeezetime.ctl_combine(*real, torch.ones(8), torch.ones(8), None, True)
    assert out.shape == real_out.shape and out.stride() == real_out.stride() and out.dtype == real_out.dtype
    assert f.shape == (2, 12, 5, 6) and f.dtype == torch.float32


# -- torch.library.opcheck on every operator (schema, fake kernel, autograd registration, AOT dispatch) ----------
def _layouts(x):
    """x as NCHW, channels-last and a non-contiguous view."""
    return [x, x.contiguous(memory_format=torch.channels_last), x.transpose(2, 3).contiguous().transpose(2, 3)]


def opcheck_cases():
    """(id, operator overload, args, kwargs) for every operator and overload, CPU, every dtype it supports."""
    st = torch.ops.squeezetime
    g = torch.Generator().manual_seed(0)
    rand = lambda *shape: torch.randn(*shape, generator=g)  # noqa: E731
    f = torch.randint(0, 256, (2, 3, 5, 7, 3), dtype=torch.uint8, generator=g)
    yield "squeeze_time", st.squeeze_time.default, (f, [1.0, 2.0, 3.0], [4.0, 5.0, 6.0]), {}
    stats = (list(squeezetime.MEAN), list(squeezetime.STD))
    yield "squeeze_time-strided", st.squeeze_time.default, (f[:, ::2, :, 1:], *stats), {}
    for dtype in DTYPES["cpu"]:
        out = torch.empty(2, 9, 5, 7, dtype=dtype, memory_format=torch.channels_last)
        yield f"squeeze_time.out-{str(dtype).replace('torch.', '')}", st.squeeze_time.out, (f, *stats), {"out": out}
    yield "squeeze_time.out-nchw", st.squeeze_time.out, (f, *stats), {"out": torch.empty(2, 9, 5, 7)}
    for dtype in DTYPES["cpu"]:
        name = str(dtype).replace("torch.", "")
        for i, layout in enumerate(("nchw", "channels_last", "strided")):
            t, s, gl, r = (_layouts(rand(2, 6, 5, 4).to(dtype))[i] for _ in range(4))
            sc, sh = rand(6), rand(6)
            yield f"ctl_combine-{name}-{layout}", st.ctl_combine.default, (t, s, gl, sc, sh, r, True), {}
            yield f"ctl_combine-{name}-{layout}-noresidual", st.ctl_combine.default, (t, s, gl, sc, sh, None, False), {}
            x = _layouts(rand(2, 6, 5, 4).to(dtype))[i]
            yield f"gate_scale-{name}-{layout}", st.gate_scale.default, (x, rand(6, 6), rand(6), rand(6, 6)), {}
        x = rand(2, 6, 5, 4)
        yield f"to_channels_last-{name}", st.to_channels_last.default, (x, dtype), {}
        yield f"to_channels_last-{name}-strided", st.to_channels_last.default, (x.transpose(2, 3), dtype), {}
        out = torch.empty(2, 6, 5, 4, dtype=dtype, memory_format=torch.channels_last)
        yield f"to_channels_last.out-{name}", st.to_channels_last.out, (x,), {"out": out}
        out = torch.empty(2, 6, 4, 5, dtype=dtype, memory_format=torch.channels_last)
        yield f"to_channels_last.out-{name}-strided", st.to_channels_last.out, (x.transpose(2, 3),), {"out": out}


OPCHECK = list(opcheck_cases())


# The .out overloads return their ``out`` (``-> Tensor(a!)``, the ATen out= convention): AOT autograd cannot
# functionalize a custom operator whose output aliases an input, so that one test is not run for them. They
# are eager-only paths (optimize skips them when compiling); a ``-> ()`` schema would lift this.
ALIASING_OUTPUT = ("test_schema", "test_autograd_registration", "test_faketensor")
ALL_UTILS = ALIASING_OUTPUT + ("test_aot_dispatch_dynamic",)


@pytest.mark.parametrize("name,op,args,kwargs", OPCHECK, ids=[c[0] for c in OPCHECK])
def test_opcheck(name, op, args, kwargs):
    utils = ALIASING_OUTPUT if ".out" in name else ALL_UTILS
    result = torch.library.opcheck(op, args, kwargs, test_utils=utils)
    assert result == {u: "SUCCESS" for u in utils}, result
    # and the fake kernel predicts the real output's strides (the layout rule of csrc/common.h)
    from torch._subclasses.fake_tensor import FakeTensorMode

    real = op(*args, **kwargs)
    with FakeTensorMode() as mode:
        to_fake = lambda a: mode.from_tensor(a) if isinstance(a, torch.Tensor) else a  # noqa: E731
        fake = op(*map(to_fake, args), **{k: to_fake(v) for k, v in kwargs.items()})
    assert (fake.shape, fake.dtype, fake.stride()) == (real.shape, real.dtype, real.stride())


def test_opcheck_covers_every_operator_and_overload():
    registered = {n for n in torch._C._dispatch_get_all_op_names() if n.startswith("squeezetime::")}
    checked = {str(op).replace("squeezetime.", "squeezetime::", 1).replace(".default", "") for _, op, _, _ in OPCHECK}
    names = ("squeeze_time", "squeeze_time.out", "ctl_combine", "gate_scale", "to_channels_last",
             "to_channels_last.out")
    assert registered == checked == {f"squeezetime::{n}" for n in names}


@pytest.mark.slow
def test_import_squeezetime_makes_the_operators_usable():
    """``import squeezetime`` alone (no ops call) registers torch.ops.squeezetime.* and every fake kernel."""
    import subprocess
    import sys

    code = """
import torch, squeezetime
from torch._subclasses.fake_tensor import FakeTensorMode
f = torch.randint(0, 256, (1, 2, 3, 4, 3), dtype=torch.uint8)
assert torch.ops.squeezetime.squeeze_time(f, [0.0] * 3, [1.0] * 3).shape == (1, 6, 3, 4)
x = torch.randn(1, 4, 3, 3)
with FakeTensorMode() as mode:
    fx = mode.from_tensor(x)
    out = mode.from_tensor(torch.empty(1, 4, 3, 3).contiguous(memory_format=torch.channels_last))
    assert torch.ops.squeezetime.to_channels_last.out(fx, out=out) is out
    w1, b1, w2 = (mode.from_tensor(t) for t in (torch.ones(4, 4), torch.ones(4), torch.ones(4, 4)))
    assert torch.ops.squeezetime.gate_scale(fx, w1, b1, w2).shape == x.shape
print("ok")
"""
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=240)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "ok"


class TinyCTLTail(torch.nn.Module):
    def forward(self, frames, temporal, scale, shift):
        x = torch.ops.squeezetime.squeeze_time(frames, [1.0, 2.0, 3.0], [4.0, 5.0, 6.0])
        return torch.ops.squeezetime.ctl_combine(temporal, x, x * 0.5, scale, shift, None, True)


def tail_inputs():
    f = frames((2, 4, 6, 7, 3))
    return f, torch.randn(2, 12, 6, 7), torch.randn(12), torch.randn(12)


def test_torch_export_sees_the_operators():
    args = tail_inputs()
    ep = torch.export.export(TinyCTLTail(), args)
    targets = {str(n.target) for n in ep.graph.nodes if n.op == "call_function"}
    assert "squeezetime.squeeze_time.default" in targets and "squeezetime.ctl_combine.default" in targets
    torch.testing.assert_close(ep.module()(*args), TinyCTLTail()(*args))


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_torch_compile_through_the_operators():
    torch._dynamo.reset()
    args = tail_inputs()
    compiled = torch.compile(TinyCTLTail(), fullgraph=True)
    torch.testing.assert_close(compiled(*args), TinyCTLTail()(*args))


@pytest.mark.slow
def test_without_extension_the_package_works_and_says_so_once():
    import subprocess
    import sys

    code = """
import torch, squeezetime
from squeezetime import ops
f = torch.randint(0, 256, (1, 4, 5, 6, 3), dtype=torch.uint8)
assert torch.equal(ops.squeeze_time(f), squeezetime.normalize_clip(f).reshape(1, 12, 5, 6))
t = torch.randn(1, 3, 4, 4)
for _ in range(3):
    y = ops.ctl_combine(t, t, t, torch.ones(3), torch.zeros(3), None, True)
assert torch.allclose(y, torch.relu(t + t * torch.sigmoid(t)))
assert not ops.extension_available()
m = squeezetime.optimize(squeezetime.create_model("k400", widen_factor=0.125), fused=True)
print(m(torch.randn(1, 3, 16, 32, 32)).shape)
"""
    env = {**__import__("os").environ, "SQUEEZETIME_DISABLE_EXT": "1"}
    proc = subprocess.run([sys.executable, "-W", "always::UserWarning", "-c", code], capture_output=True,
                          text=True, env=env, timeout=240)
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr.count("using pure-PyTorch path") == 1, proc.stderr
    assert "disabled by SQUEEZETIME_DISABLE_EXT=1" in proc.stderr
    assert "torch.Size([1, 400])" in proc.stdout


def test_missing_extension_warns_at_first_use_with_the_reinstall_hint():
    """An installed package without its extension: silent import, then one warning saying how to reinstall
    and why the import failed (here: squeezetime._C blocked)."""
    import subprocess
    import sys

    code = """
import sys, warnings
sys.modules["squeezetime._C"] = None  # as if the wheel had been built without the extension
with warnings.catch_warnings():
    warnings.simplefilter("error")
    import torch, squeezetime
    from squeezetime import ops
print("imported", flush=True)
f = torch.randint(0, 256, (1, 2, 3, 4, 3), dtype=torch.uint8)
for _ in range(2):
    x = squeezetime.normalize_clip(f)
assert torch.equal(x.reshape(1, 6, 3, 4), ops.squeeze_time_reference(f))
assert not ops.extension_available()
"""
    proc = subprocess.run([sys.executable, "-W", "always::UserWarning", "-c", code], capture_output=True,
                          text=True, timeout=240)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "imported"
    assert proc.stderr.count("C++ extension not built, using pure-PyTorch path") == 1, proc.stderr
    assert "pip install --no-build-isolation ." in proc.stderr and "python setup.py build_ext --inplace" in proc.stderr
    assert "import error: ModuleNotFoundError" in proc.stderr
    assert proc.stderr.startswith("<string>:"), proc.stderr  # points at the caller, not at squeezetime


# -- gate_scale: a CTL module's temporal gate applied to its input, in one call (CPU kernel) ---------------------
def gate_inputs(shape, dtype, memory_format=torch.contiguous_format, seed=0):
    g = torch.Generator().manual_seed(seed)
    c = shape[1]
    x = torch.randn(shape, generator=g).to(dtype).contiguous(memory_format=memory_format)
    w1, w2 = (torch.randn(c, c, generator=g) / c ** 0.5 for _ in range(2))
    return x, w1, torch.randn(c, generator=g), w2


@pytest.mark.parametrize("dtype", DTYPES["cpu"])
@pytest.mark.parametrize("shape", [(1, 64, 56, 56), (3, 17, 5, 9), (2, 512, 7, 7), (1, 1, 1, 1)])
@pytest.mark.parametrize("memory_format", [torch.contiguous_format, torch.channels_last])
def test_gate_scale_matches_reference(dtype, shape, memory_format):
    x, w1, b1, w2 = gate_inputs(shape, dtype, memory_format)
    out = torch.ops.squeezetime.gate_scale(x, w1, b1, w2)
    expected = ops.gate_scale_reference(x, w1, b1, w2)
    assert out.dtype == dtype and out.shape == x.shape
    torch.testing.assert_close(out, expected, **TOL[dtype])


def test_gate_scale_is_the_ctl_gate():
    """Against the model's own TemporalGate (BN folded into the first 1x1 weight and a bias)."""
    from squeezetime.models.squeezetime import TemporalGate
    from squeezetime.models.folding import bn_affine

    gate = TemporalGate(24).eval()
    torch.nn.init.normal_(gate[2].running_mean)
    torch.nn.init.uniform_(gate[2].running_var, 0.5, 2.0)
    x = torch.randn(2, 24, 9, 11)
    scale, shift = (t.float() for t in bn_affine(gate[2]))
    w1 = gate[1].weight[:, :, 0, 0] * scale[:, None]
    out = ops.gate_scale(x, w1, shift, gate[4].weight[:, :, 0, 0])
    with torch.no_grad():
        torch.testing.assert_close(out, x * gate(x), rtol=1e-5, atol=1e-5)


def test_gate_scale_non_contiguous_input():
    x, w1, b1, w2 = gate_inputs((2, 16, 12, 12), torch.float32)
    view = x[:, :, ::2, 1:]
    assert not view.is_contiguous()
    torch.testing.assert_close(torch.ops.squeezetime.gate_scale(view, w1, b1, w2),
                               ops.gate_scale_reference(view, w1, b1, w2), **TOL[torch.float32])


def test_gate_scale_errors_are_clear():
    x, w1, b1, w2 = gate_inputs((1, 8, 4, 4), torch.float32)
    with pytest.raises(RuntimeError, match="float32 or bfloat16"):
        torch.ops.squeezetime.gate_scale(x.double(), w1, b1, w2)
    with pytest.raises(RuntimeError, match=r"\(N, C, H, W\)"):
        torch.ops.squeezetime.gate_scale(x[0], w1, b1, w2)
    with pytest.raises(RuntimeError, match=r"\(C, C\)"):
        torch.ops.squeezetime.gate_scale(x, w1[:4], b1, w2)


# -- to_channels_last: the network input's layout change, one tiled pass (CPU kernel) ---------------------------
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("shape", [(1, 48, 224, 224), (3, 5, 17, 33), (2, 1, 1, 1)])
def test_to_channels_last_matches_aten(dtype, shape):
    x = torch.randn(shape)
    out = torch.ops.squeezetime.to_channels_last(x, dtype)
    assert out.dtype == dtype and out.is_contiguous(memory_format=torch.channels_last)
    assert torch.equal(out, x.to(dtype).contiguous(memory_format=torch.channels_last))


def test_to_channels_last_into_a_reused_buffer_and_errors():
    x = torch.randn(2, 6, 7, 9)
    out = torch.empty_like(x, memory_format=torch.channels_last)
    result = torch.ops.squeezetime.to_channels_last.out(x[:, :, :, :], out=out)
    assert result.data_ptr() == out.data_ptr() and torch.equal(out, x)
    with pytest.raises(RuntimeError, match="float32"):
        torch.ops.squeezetime.to_channels_last(x.double(), torch.float32)
    with pytest.raises(RuntimeError, match="channels-last"):
        torch.ops.squeezetime.to_channels_last.out(x, out=torch.empty_like(x))


def test_new_operators_have_fake_kernels():
    x, w1, b1, w2 = gate_inputs((2, 8, 5, 5), torch.float32)
    with torch._subclasses.fake_tensor.FakeTensorMode() as mode:
        fx, fw1, fb1, fw2 = (mode.from_tensor(t) for t in (x, w1, b1, w2))
        assert torch.ops.squeezetime.gate_scale(fx, fw1, fb1, fw2).shape == x.shape
        assert torch.ops.squeezetime.to_channels_last(fx, torch.bfloat16).dtype == torch.bfloat16


def test_extension_built_for_another_torch_says_so_once():
    import subprocess
    import sys

    code = ("import sys, types, warnings; warnings.simplefilter('always');"
            "info = types.ModuleType('squeezetime._build_info'); info.TORCH_VERSION = '0.0.1';"
            "sys.modules['squeezetime._build_info'] = info; import squeezetime;"
            "print(squeezetime.ops.extension_available())")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0 and out.stdout.strip() == "True", out.stderr
    assert out.stderr.count("built against torch 0.0.1") == 1, out.stderr
