"""Helpers shared by tests/test_export*.py: the golden model and clips, tolerances, the coverage venv."""
from __future__ import annotations

import os
import sys
from pathlib import Path

import torch

import squeezetime
from support.reference import GOLDEN_CENTRED_REL_L2, GOLDEN_REL_L2, REFERENCE, ROOT, centred_relative_l2, relative_l2

GOLDEN_CASE = "k400_w025_224"
# Reduced precision against the float64 golden logits (stated in docs/export.md): relative L2 of the logits.
REDUCED_REL_L2 = {"bf16": 2e-2, "fp16": 5e-3}
TRT_VENV = Path(os.environ.get("SQUEEZETIME_TRT_VENV", ROOT / ".venv-trt"))


def golden_model():
    return squeezetime.load_checkpoint(REFERENCE / f"{GOLDEN_CASE}.pth")


def golden_io() -> dict:
    return torch.load(REFERENCE / f"{GOLDEN_CASE}.io.pt", weights_only=True)


def assert_golden(logits: torch.Tensor, expected: torch.Tensor) -> None:
    """The float32 tolerance of ../shared/reference/README.md."""
    rel, centred = relative_l2(logits, expected), centred_relative_l2(logits, expected)
    assert rel <= GOLDEN_REL_L2, f"relative L2 {rel:.3g} > {GOLDEN_REL_L2}"
    assert centred <= GOLDEN_CENTRED_REL_L2, f"centred relative L2 {centred:.3g} > {GOLDEN_CENTRED_REL_L2}"


def assert_matches_eager(model, clips: torch.Tensor, logits: torch.Tensor, probs: torch.Tensor) -> None:
    """LOGITS/PROBS of an artifact vs the eager (unfolded) model on the same uint8 clips, float32 tolerance."""
    with torch.inference_mode():
        eager = model(squeezetime.normalize_clip(clips)).double()
    assert tuple(logits.shape) == tuple(eager.shape)
    assert relative_l2(logits, eager) <= GOLDEN_REL_L2
    assert relative_l2(probs, eager.softmax(-1)) <= GOLDEN_REL_L2
    assert torch.allclose(probs.double().sum(-1), torch.ones(len(probs), dtype=torch.float64), atol=1e-5)


def trt_python() -> Path:
    return TRT_VENV / "bin" / "python"


def subprocess_env(extra: dict | None = None) -> dict:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT)] + [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p])
    env.update(extra or {})
    return env


def python() -> str:
    return sys.executable
