"""optimize() on CUDA: golden parity in float32 and the stated float16 tolerance. Skipped without a GPU
(run by scripts/gpu_check.sh / `make gpu-check` on a GPU machine)."""
import pytest
import torch

import squeezetime
from squeezetime import ops

from conftest import GOLDEN_CENTRED_REL_L2, GOLDEN_REL_L2, REFERENCE, centred_relative_l2, reference_cases, relative_l2

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
