"""``squeezetime export``: ExportedProgram, ONNX, TorchScript or a TensorRT engine for Triton.

    squeezetime export --demo --format onnx --out build/squeezetime.onnx --triton-repo repo/
    squeezetime export --checkpoint k400.pth --format tensorrt --precision fp16 --batch 1:8:64 --triton-repo repo/

Every artifact takes uint8 clips CLIP [batch, 16, 224, 224, 3] and returns LOGITS and PROBS float32.
"""
from __future__ import annotations

import argparse
import json
import sys

from .common import add_model_options, load_model

FORMATS = ("exported-program", "onnx", "torchscript", "tensorrt")
SUFFIX = {"exported-program": ".pt2", "onnx": ".onnx", "torchscript": ".pt", "tensorrt": ".plan"}


def register(sub) -> None:
    p = sub.add_parser("export", help="export the model: ExportedProgram, ONNX, TorchScript, TensorRT (Triton)",
                       description=__doc__.split("\n\n")[0])
    add_model_options(p, backend=False)
    p.add_argument("--format", required=True, choices=FORMATS)
    p.add_argument("--out", metavar="PATH", help=f"artifact file (suffixes {', '.join(SUFFIX.values())}); "
                   "optional with --triton-repo")
    p.add_argument("--precision", choices=["fp32", "fp16", "bf16"], default=None,
                   help="compute precision of the graph (default: fp16 for tensorrt, fp32 otherwise)")
    p.add_argument("--batch", default=None, metavar="MIN:OPT:MAX",
                   help="batch range: the TensorRT optimisation profile (default 1:8:64), the dynamic batch "
                   "bound of the other formats (MAX, default 256) and the Triton max_batch_size")
    p.add_argument("--triton-repo", metavar="DIR", help="also write a Triton model: squeezetime_trt "
                   "(tensorrt), squeezetime_onnx + squeezetime_onnx_python (onnx), squeezetime_libtorch (torchscript)")
    p.add_argument("--triton-kind", choices=["gpu", "cpu"], default="gpu",
                   help="instance kind of the onnx/libtorch Triton models (gpu turns on onnxruntime's TensorRT "
                   "execution accelerator)")
    p.add_argument("--preferred-batch", type=int, nargs="+", default=None, metavar="N",
                   help="dynamic-batching preferred sizes (default: powers of two from 8 to MAX)")
    p.set_defaults(func=run)


def _fail(message: str) -> int:
    print(f"error: {message}", file=sys.stderr)
    return 2


def run(args: argparse.Namespace) -> int:
    from ..errors import SqueezeTimeError
    from ..export import tensorrt as trt
    from ..export import triton

    if not args.out and not args.triton_repo:
        return _fail("give --out PATH, --triton-repo DIR, or both")
    if args.format == "exported-program" and args.triton_repo:
        return _fail("an ExportedProgram is not a Triton model; use --format onnx, torchscript or tensorrt")
    precision = args.precision or ("fp16" if args.format == "tensorrt" else "fp32")
    try:
        batch = trt.parse_batch_profile(args.batch or ("1:8:64" if args.format == "tensorrt" else "1:8:256"))
    except ValueError as e:
        return _fail(str(e))
    try:
        model = load_model(args)
    except SqueezeTimeError as e:
        return _fail(str(e))
    if model.cls_head is None:
        return _fail("export needs a classification model; the AVA backbone has no head")
    num_classes = model.cls_head.fc_cls.out_features
    written = {}
    try:
        if args.format == "tensorrt":
            engine, meta = trt.build_engine(model, precision, batch)
            if args.out:
                from pathlib import Path

                Path(args.out).parent.mkdir(parents=True, exist_ok=True)
                Path(args.out).write_bytes(engine)
                Path(args.out).with_suffix(".json").write_text(json.dumps(meta, indent=1) + "\n")
                written["engine"] = args.out
            if args.triton_repo:
                written["triton_model"] = str(trt.write_model_dir(
                    args.triton_repo, engine, meta, preferred_batch_sizes=args.preferred_batch,
                    class_names=model.class_names))
        else:
            out = args.out or _default_out(args)
            if args.format == "exported-program":
                from ..export.exported_program import export_program, save_program

                save_program(export_program(model, precision, max_batch=batch[2]), out)
            elif args.format == "onnx":
                from ..export.onnx import export_onnx

                export_onnx(model, out, precision, max_batch=batch[2])
            else:
                from ..export.torchscript import export_torchscript

                export_torchscript(model, out, precision)
            written["artifact"] = out
            if args.triton_repo and args.format == "onnx":
                common = dict(num_classes=num_classes, class_names=model.class_names, max_batch_size=batch[2],
                              preferred_batch_sizes=args.preferred_batch, num_frames=model.num_frames)
                written["triton_model"] = str(triton.write_onnx_model_dir(args.triton_repo, out,
                                                                          kind=args.triton_kind, **common))
                written["triton_model_python"] = str(triton.write_onnx_model_dir(
                    args.triton_repo, out, python_backend=True, **common))
            elif args.triton_repo:
                written["triton_model"] = str(triton.write_libtorch_model_dir(
                    args.triton_repo, out, num_classes=num_classes, kind=args.triton_kind, max_batch_size=batch[2],
                    preferred_batch_sizes=args.preferred_batch, num_frames=model.num_frames))
    except (SqueezeTimeError, ValueError) as e:
        return _fail(str(e))
    print(json.dumps({"format": args.format, "precision": precision, "batch": list(batch), **written}))
    return 0


def _default_out(args) -> str:
    import os
    import tempfile

    # --triton-repo alone: the artifact only lives inside the repository (copied there), so build it aside
    return os.path.join(tempfile.mkdtemp(prefix="squeezetime-export-"), "model" + SUFFIX[args.format])
