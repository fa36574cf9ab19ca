"""``squeezetime archive``: build a TorchServe ``.mar`` from a checkpoint (or the demo model)."""
from __future__ import annotations

import argparse
import sys


def register(sub) -> None:
    from ..backends import DTYPES, available_backends
    from ..serving.torchserve.archive import DEVICES, LEGACY_OPTIMIZE
    from .common import device_ids

    p = sub.add_parser("archive", help="build a TorchServe .mar archive (torch-model-archiver)",
                       description="Build <out>/<model-name>.mar: the checkpoint, the handler entry point, "
                       "model-config.yaml (workers, batching, timeouts) and the class names. The worker "
                       "imports squeezetime from TorchServe's Python environment (install it there).")
    group = p.add_mutually_exclusive_group(required=True)
    group.add_argument("--checkpoint", metavar="PATH",
                       help="official or squeezetime checkpoint (.pth), or an int8 artifact (squeezetime quantize)")
    group.add_argument("--demo", action="store_true", help="the embedded demo model (8 synthetic motions)")
    p.add_argument("--arch", default=None, help="named configuration (k400, k600, hmdb51); default: inferred")
    p.add_argument("--out", required=True, metavar="MODEL_STORE", help="directory that receives the .mar")
    p.add_argument("--model-name", default="squeezetime", help="name TorchServe serves it as (default: squeezetime)")
    p.add_argument("--model-version", default="1.0")
    p.add_argument("--batch-size", type=int, default=4, help="requests per handler call (default 4)")
    p.add_argument("--max-batch-delay-ms", type=int, default=5,
                   help="how long a partial batch waits for more requests (default 5 ms)")
    p.add_argument("--workers", type=int, default=1, help="worker processes (default 1)")
    p.add_argument("--response-timeout", type=int, default=120, help="seconds per batch (default 120)")
    p.add_argument("--views", choices=["1x1", "10x3"], default="1x1", help="default views of a video request")
    p.add_argument("--topk", type=int, default=5, help="default top-k of a request")
    p.add_argument("--max-clips-per-forward", type=int, default=16,
                   help="clips per model call inside a batch (bounds memory; default 16)")
    p.add_argument("--backend", choices=available_backends(), default="auto",
                   help="the worker's backend (default auto: optimized when the C++ extension is built)")
    p.add_argument("--optimize", choices=sorted(LEGACY_OPTIMIZE), default=None,
                   help="older spelling of --backend: on = optimized, off = eager")
    p.add_argument("--threads", type=int, default=0, help="torch threads per worker (0: torch's default)")
    p.add_argument("--device", choices=DEVICES, default="auto",
                   help="auto (default): the GPU TorchServe assigns when torch has one, else the CPU; cpu; gpu: "
                        "deviceType gpu, fails without a GPU, --batch-size and --max-clips-per-forward must be "
                        "CUDA graph buckets")
    p.add_argument("--gpus", type=device_ids, default=(), metavar="IDS",
                   help="--device gpu: the GPU ids of this model's workers (deviceIds), e.g. 0,1 (default: all)")
    p.add_argument("--dtype", choices=sorted(DTYPES), default=None,
                   help="compute dtype (default: float32 on the CPU, float16 on a GPU)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..errors import SqueezeTimeError
    from ..serving.torchserve.archive import ArchiveOptions, build_archive
    from ..serving.torchserve.archive import LEGACY_OPTIMIZE

    opts = ArchiveOptions(model_name=args.model_name, version=args.model_version, batch_size=args.batch_size,
                          max_batch_delay_ms=args.max_batch_delay_ms, workers=args.workers,
                          response_timeout_s=args.response_timeout, default_views=args.views,
                          default_topk=args.topk, max_clips_per_forward=args.max_clips_per_forward,
                          backend=LEGACY_OPTIMIZE[args.optimize] if args.optimize else args.backend,
                          threads=args.threads, device=args.device, gpus=args.gpus, dtype=args.dtype)
    try:
        path = build_archive(args.out, checkpoint=args.checkpoint, arch=args.arch, options=opts)
    except (SqueezeTimeError, OSError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(path)
    return 0
