"""The read-only reference data beside the repo (../shared/reference, or $SQUEEZETIME_SHARED) and the
tolerances a float32 path is held to against its float64 golden logits."""
from __future__ import annotations

import json
import os
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent.parent
SHARED = Path(os.environ.get("SQUEEZETIME_SHARED", ROOT.parent / "shared"))
REFERENCE = SHARED / "reference"

# Tolerances of ../shared/reference/README.md: a float32 path is right below both.
GOLDEN_REL_L2 = 1e-5
GOLDEN_CENTRED_REL_L2 = 1e-3


def reference_cases() -> dict:
    path = REFERENCE / "cases.json"
    return json.loads(path.read_text()) if path.exists() else {}


def relative_l2(actual, expected) -> float:
    return float((actual.double() - expected).norm() / expected.norm())


def centred_relative_l2(actual, expected) -> float:
    a = actual.double() - actual.double().mean(0)
    e = expected - expected.mean(0)
    return float((a - e).norm() / e.norm())
