"""``squeezetime export``: ExportedProgram, ONNX, TorchScript or a TensorRT engine for Triton.

    squeezetime export --demo --format onnx --out build/squeezetime.onnx --triton-repo repo/
    squeezetime export --checkpoint k400.pth --format tensorrt --precision fp16 --batch 1:8:64 --triton-repo repo/

Every artifact takes uint8 clips CLIP [batch, 16, 224, 224, 3] and returns LOGITS and PROBS float32.
"""
from __future__ import annotations

import argparse
import json
import sys

from ..export.artifacts import FORMATS, SUFFIX, export_artifacts
from .common import add_model_options, load_model


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
    try:
        written = export_artifacts(model, args.format, args.out, precision, batch, triton_repo=args.triton_repo,
                                   triton_kind=args.triton_kind, preferred_batch=args.preferred_batch)
    except (SqueezeTimeError, ValueError) as e:
        return _fail(str(e))
    print(json.dumps({"format": args.format, "precision": precision, "batch": list(batch), **written}))
    return 0
