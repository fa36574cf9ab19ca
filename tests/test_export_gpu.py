"""GPU-only: the TensorRT engine itself (build, parity, Triton model directory). Skipped, with the reason,
where there is no CUDA GPU or no Torch-TensorRT -- on every machine of this project (see docs/export.md).
The full validation with speed figures is scripts/gpu_check_trt.sh (`make gpu-check-trt`).
"""
import importlib.util

import pytest
import torch

import squeezetime
from squeezetime.export.graph import example_clip

from support.export import REDUCED_REL_L2
from support.reference import GOLDEN_REL_L2, relative_l2


def _skip_reason():
    if not torch.cuda.is_available():
        return "needs a CUDA GPU (none visible)"
    if importlib.util.find_spec("torch_tensorrt") is None:
        return "needs Torch-TensorRT with TensorRT (pip install 'squeezetime[tensorrt]')"
    return None


pytestmark = pytest.mark.skipif(_skip_reason() is not None, reason=str(_skip_reason()))

# fp32 engines are built with TF32 off; the reference is the eager float32 model on the CPU.
TOLERANCE = {"fp32": GOLDEN_REL_L2, "fp16": REDUCED_REL_L2["fp16"]}


@pytest.fixture(scope="module")
def model():
    return squeezetime.create_model("k400", widen_factor=0.25).eval()


@pytest.mark.parametrize("precision", ["fp32", "fp16"])
def test_engine_matches_eager_through_triton_model_dir(model, precision, tmp_path):
    from squeezetime.export import tensorrt as trt
    from squeezetime.export.triton_models import parse_config

    model_dir = trt.export_tensorrt(model, tmp_path, precision, batch=(1, 4, 8))
    meta = trt.check_engine_compatible(model_dir)
    assert meta["precision"] == precision
    assert parse_config((model_dir / "config.pbtxt").read_text()).max_batch_size == 8
    runner = trt.EngineRunner(model_dir / "1" / "model.plan")
    assert sorted(runner.names) == ["CLIP", "LOGITS", "PROBS"]
    for batch in (1, 5):
        clips = example_clip(batch)
        logits, probs = runner(clips.cuda())
        torch.cuda.synchronize()
        with torch.inference_mode():
            eager = model(squeezetime.normalize_clip(clips)).double()
        assert relative_l2(logits.cpu(), eager) <= TOLERANCE[precision]
        assert relative_l2(probs.cpu(), eager.softmax(-1)) <= TOLERANCE[precision]
