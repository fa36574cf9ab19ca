"""optimize() on CUDA: golden parity in float32 and the stated float16 tolerance. Skipped without a GPU
(run by scripts/gpu_check.sh / `make gpu-check` on a GPU machine)."""
import pytest
import torch

import squeezetime
from squeezetime import ops

from support.reference import (GOLDEN_CENTRED_REL_L2, GOLDEN_REL_L2, REFERENCE, centred_relative_l2,
                               reference_cases, relative_l2)

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA GPU (run scripts/gpu_check.sh on one)")

FP16_REL_L2 = 1e-2  # float16 (11-bit mantissa) logits vs float64; bfloat16 gets test_optimize.BF16_REL_L2


def golden(case):
    model = squeezetime.load_checkpoint(REFERENCE / f"{case}.pth").cuda()
    io = torch.load(REFERENCE / f"{case}.io.pt", weights_only=True)
    return model, io["frames"].cuda(), io["expected"]


@pytest.mark.parametrize("case", sorted(reference_cases()))
def test_cuda_extension_and_golden_parity(case):
    assert ops.cuda_extension_available(), "build the CUDA extension: python setup.py build_ext --inplace"
    torch.backends.cudnn.allow_tf32 = False
    torch.backends.cuda.matmul.allow_tf32 = False
    model, frames, expected = golden(case)
    with torch.inference_mode():
        reference = model(squeezetime.normalize_clip(frames.cpu()).cuda())
        for fused in (True, False):
            opt = squeezetime.optimize(model, fused=fused)
            logits = opt.forward_frames(frames).cpu()
            assert relative_l2(logits, expected) <= GOLDEN_REL_L2
            assert centred_relative_l2(logits, expected) <= GOLDEN_CENTRED_REL_L2
        for dtype, tol in ((torch.float16, FP16_REL_L2), (torch.bfloat16, 2e-2)):
            logits = squeezetime.optimize(model, dtype=dtype)(squeezetime.normalize_clip(frames.cpu()).cuda()).cpu()
            assert relative_l2(logits, expected) <= tol
            assert torch.equal(logits.argmax(1), reference.cpu().argmax(1))


# -- the GPU serving path: optimized on CUDA = CUDA graphs per batch bucket (CudaGraphBackend) -------------------
def graph_backend(model, dtype=None, max_bucket=None):
    """The backend squeezetime.load builds on a GPU; with max_bucket, the same class with fewer buckets."""
    from squeezetime.backends import create_backend
    from squeezetime.backends.base import CudaGraphBackend

    if max_bucket is None:
        return create_backend("optimized", model, device="cuda", dtype=dtype)
    dtype = dtype or torch.float16
    return CudaGraphBackend(squeezetime.optimize(model, dtype=dtype), torch.device("cuda"), dtype, model.data_config,
                            max_bucket=max_bucket)


@pytest.mark.parametrize("case", sorted(reference_cases()))
def test_cuda_graph_backend_golden_parity(case):
    """float16 (the default on a GPU) within the stated float16 tolerance; float32 graphs within the golden one."""
    from squeezetime.backends.base import CudaGraphBackend

    torch.backends.cudnn.allow_tf32 = False
    torch.backends.cuda.matmul.allow_tf32 = False
    model, frames, expected = golden(case)
    frames = frames.cpu()
    backend = graph_backend(model)
    assert isinstance(backend, CudaGraphBackend) and backend.dtype == torch.float16
    logits = backend.logits(frames)
    assert relative_l2(logits, expected) <= FP16_REL_L2
    assert torch.equal(logits.argmax(1), expected.argmax(1))
    logits32 = graph_backend(model, dtype=torch.float32).logits(frames)
    assert relative_l2(logits32, expected) <= GOLDEN_REL_L2
    assert centred_relative_l2(logits32, expected) <= GOLDEN_CENTRED_REL_L2
    assert backend.runner.captures >= 1  # the logits came from a replayed graph


def test_graph_replays_equal_the_eager_module_at_every_batch_and_pipelined():
    """Buckets padded with other clips, split batches and overlapped submits give each clip its eager logits."""
    model = squeezetime.create_model("k400", widen_factor=0.25, num_classes=7).cuda().eval()
    backend = graph_backend(model, max_bucket=8)
    g = torch.Generator().manual_seed(0)
    clips = torch.randint(0, 256, (21, 16, 112, 112, 3), dtype=torch.uint8, generator=g)
    with torch.inference_mode():
        eager = backend.module.forward_frames(clips.cuda()).float().cpu()
    for n in (1, 3, 8, 21):
        torch.testing.assert_close(backend.logits(clips[:n]), eager[:n], rtol=2e-3, atol=2e-3)
    pending = [backend.submit(clips[i:i + 5].pin_memory()) for i in range(0, 20, 5)]
    for i, p in enumerate(pending):
        torch.testing.assert_close(p.result(), eager[5 * i:5 * i + 5], rtol=2e-3, atol=2e-3)
    assert backend.runner.captured((16, 112, 112)) == [1, 4, 8]


def test_warmup_captures_the_server_buckets_and_the_memory_is_reported():
    from squeezetime.optimize.cuda_graphs import buckets_up_to

    model = squeezetime.create_model("k400", widen_factor=0.25, num_classes=7).cuda().eval()
    backend = graph_backend(model)
    before = torch.cuda.memory_reserved()
    assert backend.warmup(buckets_up_to(16), (16, 112, 112)) == [1, 2, 4, 8, 16]
    print(f"buckets 1-16 at 16x112x112, width 1/4: {(torch.cuda.memory_reserved() - before) / 2**20:.0f} MiB reserved")
    captures = backend.runner.captures
    backend.logits(torch.zeros(11, 16, 112, 112, 3, dtype=torch.uint8))
    assert backend.runner.captures == captures


def test_the_caller_model_is_left_where_it_was():
    model = squeezetime.create_model("k400", widen_factor=0.25, num_classes=7).eval()
    graph_backend(model)
    assert next(model.parameters()).device.type == "cpu" and next(model.parameters()).dtype == torch.float32


def test_fused_cudnn_convolutions_match_the_unfused_maths(monkeypatch):
    """conv + bias + ReLU (and + residual) as one cuDNN call gives the numbers of the three-kernel ATen path."""
    from squeezetime.optimize import cudnn

    model = squeezetime.create_model("k400", widen_factor=0.25, num_classes=7).cuda().eval()
    x = squeezetime.normalize_clip(torch.randint(0, 256, (2, 16, 112, 112, 3), dtype=torch.uint8)).cuda()
    with torch.inference_mode():
        fused = squeezetime.optimize(model, dtype=torch.float16)(x).float()
        monkeypatch.setenv("SQUEEZETIME_CUDNN_FUSION", "0")
        unfused = squeezetime.optimize(model, dtype=torch.float16)(x).float()
    assert not cudnn._declined, "cuDNN declined a fused convolution of the network"
    assert relative_l2(fused.cpu(), unfused.cpu().double()) <= 5e-3
