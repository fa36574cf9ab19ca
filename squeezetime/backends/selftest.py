"""The ``optimized`` backend's guard against torch's private oneDNN API changing under it.

``squeezetime.optimize`` drives oneDNN through ``torch.ops.mkldnn`` functions that are not public API
(``_reorder_convolution_weight``, ``_convolution_pointwise`` .default / .binary and the in-place
``_convolution_pointwise_.binary``): any torch release may rename them or change what their arguments mean.
Before the backend is built on the CPU they are checked once per process and dtype: they must exist, and a
tiny SqueezeTime (k400 layout, width 1/16, 8 frames: every block kind, the stem, the CTL post-ops and the
in-place residual) optimised must agree with its eager self, at 64x64 with every private call working, and at
32x32, whose last stage is 1x1: the shape where torch 2.11's binary ``add`` post-op raises, so the public
fallback of ``optimize.onednn`` (one ``OneDnnFallbackWarning``) is checked too. If not, ``OneDnnSelfTestError``
says which, and ``backend="auto"`` moves on to the next backend of its rule (one warning).
"""
from __future__ import annotations

import torch

from ..errors import SqueezeTimeError

PRIVATE_OPS = ("_reorder_convolution_weight", "_convolution_pointwise", "_convolution_pointwise_")
# optimized vs eager on the tiny model (relative L2 of the logits): float32 rounding is ~1e-6, a wrong op far more
TOLERANCE = {torch.float32: 1e-4, torch.bfloat16: 5e-2}
_passed: dict = {}


class OneDnnSelfTestError(SqueezeTimeError, RuntimeError):
    """torch's private oneDNN functions that ``squeezetime.optimize`` uses are missing or give wrong numbers."""


def _ops_identity() -> tuple:
    mk = getattr(torch.ops, "mkldnn", None)
    return tuple(id(getattr(mk, name, None)) for name in PRIVATE_OPS)


# input sizes of the self-test: 64x64 (2x2 last stage: no private call may fail) and 32x32 (1x1 last stage:
# torch 2.11's oneDNN add rejects it, and the public fallback must give the same numbers)
SIZES = ((64, 64), (32, 32))


def _tiny_model():
    from ..models.registry import create_model

    with torch.random.fork_rng():
        torch.manual_seed(0)
        model = create_model("k400", widen_factor=0.0625, num_classes=5, num_frames=8).eval()
        for m in model.modules():  # non-trivial batch norms, so that folding is exercised
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.uniform_(-0.2, 0.2)
                m.running_var.uniform_(0.5, 1.5)
                m.weight.data.uniform_(0.5, 1.5)
                m.bias.data.uniform_(-0.2, 0.2)
        clips = [torch.randn(1, 3, 8, h, w) for h, w in SIZES]
    return model, clips


def check_onednn(dtype: torch.dtype = torch.float32) -> None:
    """Raise ``OneDnnSelfTestError`` when the private oneDNN functions are missing or wrong (CPU, oneDNN
    builds of torch; once per process, dtype and set of functions)."""
    if not torch.backends.mkldnn.is_available():
        return  # optimize runs its F.conv2d path: nothing private to check
    key = (dtype, _ops_identity())
    if key in _passed:
        return
    mk = getattr(torch.ops, "mkldnn", None)
    missing = [name for name in PRIVATE_OPS if not hasattr(mk, name)]
    if missing:
        raise OneDnnSelfTestError(f"torch {torch.__version__} lacks torch.ops.mkldnn.{', '.join(missing)}, which "
                                  "squeezetime.optimize uses; use backend='eager' (or 'auto', which falls back)")
    from ..optimize import onednn, optimize

    model, clips = _tiny_model()
    try:
        with torch.inference_mode():
            opt = optimize(model, dtype=dtype)
            got = [opt(clips[0])]
            if onednn.failures(opt):  # the private API itself broke (e.g. a changed signature), not one shape
                raise RuntimeError(onednn.failures(opt)[0])
            got = torch.cat(got + [opt(clip) for clip in clips[1:]]).double()
            want = torch.cat([model(clip) for clip in clips]).double()
    except Exception as e:  # noqa: BLE001 - a changed signature shows up as any error
        raise OneDnnSelfTestError(f"squeezetime.optimize's oneDNN functions fail under torch {torch.__version__} "
                                  f"({type(e).__name__}: {e}); use backend='eager' (or 'auto', which falls back)") from e
    error = float((got - want).norm() / want.norm())
    if not error <= TOLERANCE.get(dtype, 5e-2):
        raise OneDnnSelfTestError(f"squeezetime.optimize's oneDNN functions give wrong numbers under torch "
                                  f"{torch.__version__} (self-test: relative L2 {error:.2g} > {TOLERANCE.get(dtype, 5e-2):g} "
                                  "against eager); use backend='eager' (or 'auto', which falls back)")
    _passed[key] = error
