"""``squeezetime torchserve start|stop|status|key|grpc-stubs``: run a real TorchServe for .mar archives."""
from __future__ import annotations

import argparse
import json
import sys

from .common import EXIT_USAGE


def _models(values: list[str] | None) -> dict[str, str] | None:
    if not values:
        return None
    out = {}
    for v in values:
        name, sep, mar = v.partition("=")
        if not sep:
            name, mar = v[:-4] if v.endswith(".mar") else v, v if v.endswith(".mar") else f"{v}.mar"
        out[name] = mar
    return out


def register(sub) -> None:
    p = sub.add_parser("torchserve", help="start/stop TorchServe for squeezetime archives")
    ts = p.add_subparsers(dest="action", required=True, metavar="ACTION")

    start = ts.add_parser("start", help="start TorchServe; returns once every worker is READY")
    start.add_argument("--model-store", required=True, metavar="DIR")
    start.add_argument("--models", nargs="+", metavar="NAME=FILE.mar",
                       help="archives to serve (default: every .mar in the store)")
    for name, default in (("inference", 8080), ("management", 8081), ("metrics", 8082), ("grpc", 7070),
                          ("grpc-management", 7071)):
        start.add_argument(f"--{name}-port", type=int, default=default)
    start.add_argument("--max-request-size", type=int, default=64 * 1024 * 1024,
                       help="bytes; larger requests get HTTP 413 (default 64 MiB)")
    start.add_argument("--job-queue-size", type=int, default=100, metavar="N",
                       help="requests that may wait per model; more get HTTP 503 at once (default 100)")
    start.add_argument("--token-auth", action="store_true",
                       help="require 'Authorization: Bearer <key>' (keys: `squeezetime torchserve key`)")
    start.add_argument("--enable-model-api", action="store_true",
                       help="allow registering/unregistering models over the management API")
    start.add_argument("--number-of-gpu", type=int, default=None, metavar="N",
                       help="GPUs TorchServe hands out to workers as gpu_id (default: every GPU it sees; 0: CPU only)")
    start.add_argument("--timeout", type=float, default=180.0, help="seconds to wait for READY workers")
    start.add_argument("--foreground", action="store_true", help="stay attached; Ctrl-C stops the server")
    _run_dir(start)
    start.set_defaults(func=run_start)

    stop = ts.add_parser("stop", help="stop the server and wait until it has exited")
    stop.add_argument("--timeout", type=float, default=60.0)
    _run_dir(stop)
    stop.set_defaults(func=run_stop)

    status = ts.add_parser("status", help="the server's models and worker states (JSON)")
    _run_dir(status)
    status.set_defaults(func=run_status)

    key = ts.add_parser("key", help="print the token-auth keys (JSON) of a server started with --token-auth")
    _run_dir(key)
    key.set_defaults(func=run_key)

    stubs = ts.add_parser("grpc-stubs", help="generate Python gRPC stubs from the protos in TorchServe's jar")
    stubs.add_argument("--out", default="build/torchserve_grpc")
    stubs.set_defaults(func=run_stubs)


def _run_dir(p) -> None:
    p.add_argument("--run-dir", default=None, help="config, logs, pid state of the server (default "
                   "$SQUEEZETIME_TORCHSERVE_RUN_DIR or ~/.cache/squeezetime/torchserve)")


def run_start(args: argparse.Namespace) -> int:
    from ..serving.torchserve import server
    from ..serving.torchserve.config import gpu_config

    ports = {"inference": args.inference_port, "management": args.management_port, "metrics": args.metrics_port,
             "grpc": args.grpc_port, "grpc_management": args.grpc_management_port}
    try:
        info = server.start(args.model_store, models=_models(args.models), run_dir=args.run_dir, ports=ports,
                            max_request_size=args.max_request_size, job_queue_size=args.job_queue_size,
                            token_auth=args.token_auth,
                            enable_model_api=args.enable_model_api, timeout=args.timeout,
                            extra_config=gpu_config(args.number_of_gpu))
    except (server.TorchServeError, OSError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return EXIT_USAGE
    print(f"TorchServe ready: {', '.join(info.models)}\n  inference  {info.inference_url}\n"
          f"  management {info.management_url}\n  metrics    {info.metrics_url}\n  gRPC       {info.grpc_address}\n"
          f"  logs       {info.log_dir}\n  token auth {'on (squeezetime torchserve key)' if info.token_auth else 'off'}")
    sys.stdout.flush()
    return server.run_foreground(info) if args.foreground else 0


def run_stop(args: argparse.Namespace) -> int:
    from ..serving.torchserve import server

    try:
        stopped = server.stop(args.run_dir, timeout=args.timeout)
    except server.TorchServeError as e:
        print(f"error: {e}", file=sys.stderr)
        return EXIT_USAGE
    print("TorchServe stopped." if stopped else "TorchServe was not running.")
    return 0


def run_status(args: argparse.Namespace) -> int:
    from ..serving.torchserve import server

    report = server.status(args.run_dir)
    if not report["running"]:
        print(json.dumps(report))
        return EXIT_USAGE
    print(json.dumps(report, indent=1))
    return 0


def run_key(args: argparse.Namespace) -> int:
    from ..serving.torchserve import server

    keys = server.read_keys(args.run_dir or server.default_run_dir())
    if not keys:
        print("error: no key_file.json (server not started with --token-auth?)", file=sys.stderr)
        return EXIT_USAGE
    print(json.dumps(keys, indent=1))
    return 0


def run_stubs(args: argparse.Namespace) -> int:
    from ..serving.torchserve.grpc_stubs import generate

    print(f"gRPC stubs in {generate(args.out)}")
    return 0
