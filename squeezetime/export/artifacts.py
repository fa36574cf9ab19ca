"""``squeezetime export`` as a function: one model -> the artifact of a format, and optionally its Triton model.

    export_artifacts(model, "onnx", "build/squeezetime.onnx", "fp32", (1, 8, 256), triton_repo="repo/")

Returns what was written (``artifact``, ``engine``, ``triton_model``, ``triton_model_python``: paths).
"""
from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

FORMATS = ("exported-program", "onnx", "torchscript", "tensorrt")
SUFFIX = {"exported-program": ".pt2", "onnx": ".onnx", "torchscript": ".pt", "tensorrt": ".plan"}


def export_artifacts(model, fmt: str, out: str | None, precision: str, batch: tuple[int, int, int], *,
                     triton_repo: str | None = None, triton_kind: str = "gpu",
                     preferred_batch: list[int] | None = None) -> dict[str, str]:
    """Write ``model`` as ``fmt`` to ``out`` (a temporary file when only ``triton_repo`` is given) and, with
    ``triton_repo``, the Triton model that serves it. ``batch``: (min, opt, max)."""
    if fmt == "tensorrt":
        return _tensorrt(model, out, precision, batch, triton_repo, preferred_batch)
    out = out or _scratch_path(fmt)
    if fmt == "exported-program":
        from .exported_program import export_program, save_program

        save_program(export_program(model, precision, max_batch=batch[2]), out)
    elif fmt == "onnx":
        from .onnx import export_onnx

        export_onnx(model, out, precision, max_batch=batch[2])
    else:
        from .torchscript import export_torchscript

        export_torchscript(model, out, precision)
    written = {"artifact": out}
    if triton_repo:
        written.update(_triton_models(model, fmt, out, batch, triton_repo, triton_kind, preferred_batch))
    return written


def _tensorrt(model, out, precision, batch, triton_repo, preferred_batch) -> dict[str, str]:
    from . import tensorrt as trt

    engine, meta = trt.build_engine(model, precision, batch)
    written = {}
    if out:
        Path(out).parent.mkdir(parents=True, exist_ok=True)
        Path(out).write_bytes(engine)
        Path(out).with_suffix(".json").write_text(json.dumps(meta, indent=1) + "\n")
        written["engine"] = out
    if triton_repo:
        written["triton_model"] = str(trt.write_model_dir(triton_repo, engine, meta,
                                                          preferred_batch_sizes=preferred_batch,
                                                          class_names=model.class_names))
    return written


def _triton_models(model, fmt, out, batch, triton_repo, triton_kind, preferred_batch) -> dict[str, str]:
    """The Triton model of an ONNX (an onnxruntime model and a python-backend one) or TorchScript artifact."""
    from . import triton_models as triton

    num_classes = model.cls_head.fc_cls.out_features
    if fmt == "onnx":
        common = dict(num_classes=num_classes, class_names=model.class_names, max_batch_size=batch[2],
                      preferred_batch_sizes=preferred_batch, num_frames=model.num_frames)
        return {"triton_model": str(triton.write_onnx_model_dir(triton_repo, out, kind=triton_kind, **common)),
                "triton_model_python": str(triton.write_onnx_model_dir(triton_repo, out, python_backend=True,
                                                                       **common))}
    return {"triton_model": str(triton.write_libtorch_model_dir(
        triton_repo, out, num_classes=num_classes, kind=triton_kind, max_batch_size=batch[2],
        preferred_batch_sizes=preferred_batch, num_frames=model.num_frames))}


def _scratch_path(fmt: str) -> str:
    # --triton-repo alone: the artifact only lives inside the repository (copied there), so build it aside
    return os.path.join(tempfile.mkdtemp(prefix="squeezetime-export-"), "model" + SUFFIX[fmt])


__all__ = ["FORMATS", "SUFFIX", "export_artifacts"]
