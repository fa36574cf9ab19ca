"""The CUDA kernels of every operator (csrc/cuda) against the pure-PyTorch references and the CPU kernels: every
dtype, both layouts, odd sizes, opcheck (schema, fake kernel), clear errors, no host sync (each kernel runs
inside a CUDA graph capture and its replay gives the same numbers). Skipped without a GPU; `make gpu-check` runs
them on one."""
import pytest
import torch

import squeezetime
from squeezetime import ops

pytestmark = pytest.mark.skipif(
    not (torch.cuda.is_available() and ops.cuda_extension_available()),
    reason="no CUDA GPU with the CUDA extension (run `make gpu-check` on a GPU machine)")

DTYPES = [torch.float32, torch.float16, torch.bfloat16]
TOL = {torch.float32: dict(rtol=1e-5, atol=1e-5), torch.float16: dict(rtol=2e-3, atol=2e-3),
       torch.bfloat16: dict(rtol=1.6e-2, atol=1.6e-2)}
STATS = (list(squeezetime.MEAN), list(squeezetime.STD))


def frames(shape, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, shape, dtype=torch.uint8, generator=g)


def name(dtype):
    return str(dtype).replace("torch.", "")


@pytest.mark.parametrize("shape", [(1, 16, 224, 224, 3), (3, 5, 17, 33, 3), (2, 1, 1, 1, 3), (1, 40, 9, 70, 3)])
@pytest.mark.parametrize("dtype", DTYPES)
def test_squeeze_time_out_writes_the_channels_last_network_input(shape, dtype):
    f = frames(shape)
    n, t, h, w, _ = shape
    out = torch.empty(n, 3 * t, h, w, dtype=dtype, device="cuda", memory_format=torch.channels_last)
    torch.ops.squeezetime.squeeze_time.out(f.cuda(), *STATS, out=out)
    expected = ops.squeeze_time_reference(f, *STATS).to(dtype)
    assert torch.equal(out.cpu(), expected)  # float32 arithmetic as the reference, rounded once: bit for bit


def test_squeeze_time_is_the_reference_bit_for_bit_on_cuda():
    f = frames((2, 6, 19, 23, 3))
    assert torch.equal(torch.ops.squeezetime.squeeze_time(f.cuda(), *STATS).cpu(), ops.squeeze_time_reference(f, *STATS))
    out = torch.empty(2, 18, 19, 23, device="cuda")
    torch.ops.squeezetime.squeeze_time.out(f[:, :, :, :].cuda(), *STATS, out=out)
    assert torch.equal(out.cpu(), ops.squeeze_time_reference(f, *STATS))


def gate_inputs(shape, dtype, memory_format, seed=0):
    g = torch.Generator().manual_seed(seed)
    c = shape[1]
    x = torch.randn(shape, generator=g).to(dtype).contiguous(memory_format=memory_format)
    w1, w2 = (torch.randn(c, c, generator=g) / c ** 0.5 for _ in range(2))
    return x, w1, torch.randn(c, generator=g), w2


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", [(1, 64, 56, 56), (3, 17, 5, 9), (2, 512, 7, 7), (1, 1, 1, 1), (70, 33, 3, 3)])
@pytest.mark.parametrize("memory_format", [torch.contiguous_format, torch.channels_last])
def test_gate_scale_matches_reference(dtype, shape, memory_format):
    x, w1, b1, w2 = gate_inputs(shape, dtype, memory_format)
    out = torch.ops.squeezetime.gate_scale(x.cuda(), w1.cuda(), b1.cuda(), w2.cuda())
    expected = ops.gate_scale_reference(x, w1, b1, w2)
    assert out.dtype == dtype and out.shape == x.shape
    torch.testing.assert_close(out.cpu(), expected, **TOL[dtype])


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", [(1, 48, 224, 224), (3, 5, 17, 33), (2, 1, 1, 1), (2, 70, 3, 40)])
def test_to_channels_last_matches_aten(dtype, shape):
    x = torch.randn(shape)
    out = torch.ops.squeezetime.to_channels_last(x.cuda(), dtype)
    assert out.dtype == dtype and out.is_contiguous(memory_format=torch.channels_last)
    assert torch.equal(out.cpu(), x.to(dtype).contiguous(memory_format=torch.channels_last))
    buf = torch.empty_like(out)
    assert torch.ops.squeezetime.to_channels_last.out(x.cuda(), out=buf).data_ptr() == buf.data_ptr()
    assert torch.equal(buf, out)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("memory_format", [torch.contiguous_format, torch.channels_last])
def test_ctl_combine_matches_cpu_and_reference(dtype, memory_format):
    g = torch.Generator().manual_seed(0)
    t, s, gl, r = (torch.randn(2, 19, 7, 5, generator=g).to(dtype).contiguous(memory_format=memory_format)
                   for _ in range(4))
    sc, sh = torch.randn(19, generator=g), torch.randn(19, generator=g)
    out = torch.ops.squeezetime.ctl_combine(*(a.cuda() for a in (t, s, gl, sc, sh, r)), True)
    torch.testing.assert_close(out.cpu(), ops.ctl_combine_reference(t, s, gl, sc, sh, r, True), **TOL[dtype])


def opcheck_cases():
    st = torch.ops.squeezetime
    g = torch.Generator().manual_seed(0)
    f = torch.randint(0, 256, (2, 3, 5, 7, 3), dtype=torch.uint8, generator=g).cuda()
    yield "squeeze_time", st.squeeze_time.default, (f, *STATS), {}
    for dtype in DTYPES:
        out = torch.empty(2, 9, 5, 7, dtype=dtype, device="cuda", memory_format=torch.channels_last)
        yield f"squeeze_time.out-{name(dtype)}", st.squeeze_time.out, (f, *STATS), {"out": out}
        x = torch.randn(2, 6, 5, 4, generator=g).to(dtype).cuda().contiguous(memory_format=torch.channels_last)
        w1, b1, w2 = (torch.randn(*s, generator=g).cuda() for s in ((6, 6), (6,), (6, 6)))
        yield f"gate_scale-{name(dtype)}", st.gate_scale.default, (x, w1, b1, w2), {}
        t = torch.randn(2, 6, 5, 4, generator=g).to(dtype).cuda()
        sc = torch.randn(6, generator=g).cuda()
        yield f"ctl_combine-{name(dtype)}", st.ctl_combine.default, (t, t, t, sc, sc, t, True), {}
        yield f"to_channels_last-{name(dtype)}", st.to_channels_last.default, (torch.randn(2, 6, 5, 4).cuda(), dtype), {}


OPCHECK = list(opcheck_cases()) if torch.cuda.is_available() else []


@pytest.mark.parametrize("case", OPCHECK, ids=[c[0] for c in OPCHECK])
def test_opcheck_every_operator_on_cuda(case):
    _, op, args, kwargs = case
    torch.library.opcheck(op, args, kwargs, test_utils=("test_schema", "test_faketensor", "test_aot_dispatch_static"))


def test_cuda_errors_are_clear_runtime_errors():
    x = torch.randn(1, 8, 4, 4, device="cuda")
    w = torch.ones(8, 8, device="cuda")
    with pytest.raises(RuntimeError, match="float32, float16 or bfloat16"):
        torch.ops.squeezetime.gate_scale(x.double(), w, torch.ones(8, device="cuda"), w)
    with pytest.raises(RuntimeError, match=r"\(C, C\)"):
        torch.ops.squeezetime.gate_scale(x, w[:4], torch.ones(8, device="cuda"), w)
    with pytest.raises(RuntimeError, match="is on"):
        torch.ops.squeezetime.gate_scale(x, w.cpu(), torch.ones(8, device="cuda"), w)
    f = frames((1, 2, 3, 4, 3)).cuda()
    with pytest.raises(RuntimeError, match="CUDA tensor"):
        torch.ops.squeezetime.squeeze_time.out(f, *STATS, out=torch.empty(1, 6, 3, 4))
    with pytest.raises(RuntimeError, match=r"out must be \(N, 3T, H, W\)"):
        torch.ops.squeezetime.squeeze_time.out(f, *STATS, out=torch.empty(1, 6, 4, 3, device="cuda"))
    with pytest.raises(RuntimeError, match="float32"):
        torch.ops.squeezetime.to_channels_last(x.half(), torch.float16)
    torch.cuda.synchronize()  # nothing was launched by the refused calls: the device is still healthy
    assert torch.equal(torch.ops.squeezetime.squeeze_time(f, *STATS).cpu(), ops.squeeze_time_reference(f.cpu(), *STATS))


def test_every_kernel_runs_inside_a_cuda_graph_capture():
    """No host sync and no allocation outside the capture's pool: capture one call of each operator, replay it
    on new inputs written into the static ones, and compare with a direct call."""
    g = torch.Generator().manual_seed(1)
    f = frames((2, 4, 9, 11, 3)).cuda()
    x = torch.randn(2, 16, 6, 6, generator=g).half().cuda().contiguous(memory_format=torch.channels_last)
    w1, b1, w2 = (torch.randn(*s, generator=g).cuda() for s in ((16, 16), (16,), (16, 16)))
    sc = torch.randn(16, generator=g).cuda()
    out = torch.empty(2, 12, 9, 11, dtype=torch.float16, device="cuda", memory_format=torch.channels_last)

    def calls():
        torch.ops.squeezetime.squeeze_time.out(f, *STATS, out=out)
        return (out, torch.ops.squeezetime.gate_scale(x, w1, b1, w2),
                torch.ops.squeezetime.ctl_combine(x, x, x, sc, sc, x, True),
                torch.ops.squeezetime.to_channels_last(x.float(), torch.float16),
                torch.ops.squeezetime.squeeze_time(f, *STATS))

    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):
        calls()
    torch.cuda.current_stream().wait_stream(side)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        static = calls()
    f.copy_(frames((2, 4, 9, 11, 3), seed=5).cuda())
    x.copy_(torch.randn(2, 16, 6, 6, generator=g).half())
    graph.replay()
    torch.cuda.synchronize()
    replayed = [t.clone() for t in static]  # out is static[0]: the direct calls below write it again
    for got, want in zip(replayed, calls()):
        assert torch.equal(got, want)
    assert torch.equal(replayed[4].cpu(), ops.squeeze_time_reference(f.cpu(), *STATS))
