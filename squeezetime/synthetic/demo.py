"""The demo model: SqueezeTime-50 at 1/4 width, trained on ``squeezetime.synthetic`` (scripts/train_demo.py)."""
from __future__ import annotations

from importlib import resources

from ..models.checkpoint import load_checkpoint
from ..models.squeezetime import SqueezeTime
from .generator import CLASSES

DEMO_ARCH = dict(depth=50, widen_factor=0.25, num_classes=len(CLASSES))
DEMO_CHECKPOINT = "demo_k400_w025_synthetic8.pth"


def demo_checkpoint_path() -> str:
    return str(resources.files("squeezetime.synthetic").joinpath(DEMO_CHECKPOINT))


def demo_model() -> SqueezeTime:
    """A fresh copy of the demo model (float32, eval mode, class names attached)."""
    return load_checkpoint(demo_checkpoint_path())
