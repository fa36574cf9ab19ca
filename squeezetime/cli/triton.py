"""``squeezetime triton-repo | serve | client``: write a Triton model repository, run tritonserver, query it."""
from __future__ import annotations

import argparse
import signal
import sys

from .common import EXIT_USAGE, classify_videos, device_ids, positive_int
from .timeline import positive_seconds


def register(sub) -> None:
    from ..backends import DTYPES, available_backends
    from ..serving.requests import DEFAULT_MAX_VIDEO_BYTES
    from ..serving.triton.shm import SHM_CHECKS

    p = sub.add_parser("triton-repo", help="write a Triton model repository (squeezetime, squeezetime_video)")
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--checkpoint", metavar="PATH",
                       help="official or squeezetime checkpoint (.pth), or an int8 artifact (squeezetime quantize)")
    src.add_argument("--demo", action="store_true", help="the embedded demo model")
    p.add_argument("--arch", default=None, help="named configuration (default: inferred from the checkpoint)")
    p.add_argument("--out", required=True, help="repository directory to write")
    p.add_argument("--max-batch-size", type=int, default=8, help="max_batch_size of both models (default 8)")
    p.add_argument("--instances", type=int, default=1, help="instances of the clip model (default 1)")
    p.add_argument("--video-instances", type=int, default=2, help="instances of squeezetime_video (default 2)")
    p.add_argument("--kind", choices=["cpu", "gpu"], default="cpu",
                   help="instance_group kind of squeezetime and squeezetime_video (gpu: KIND_GPU, the clip model on "
                        "cuda:<device id> with CUDA graphs per batch bucket; --max-batch-size must be a bucket)")
    p.add_argument("--gpus", type=device_ids, default=(), metavar="IDS",
                   help="--kind gpu: device ids of the instance groups, e.g. 0,1 (default: every visible GPU)")
    p.add_argument("--dtype", choices=sorted(DTYPES), default=None,
                   help="compute dtype of the clip model (default: float32 on the CPU, float16 on a GPU)")
    p.add_argument("--threads", type=int, default=0, help="torch threads of the clip model (0: all cores)")
    p.add_argument("--max-queue-delay-us", type=int, default=2000, help="dynamic batching max_queue_delay")
    p.add_argument("--max-queue-size", type=positive_int, default=64,
                   help="requests waiting per model before Triton answers UNAVAILABLE (default 64)")
    p.add_argument("--queue-timeout-us", type=int, default=0,
                   help="reject a request that waited this long in a model's queue (default 0: never)")
    p.add_argument("--max-video-bytes", type=int, default=DEFAULT_MAX_VIDEO_BYTES,
                   help=f"largest accepted video upload (default {DEFAULT_MAX_VIDEO_BYTES})")
    p.add_argument("--backend", choices=available_backends(), default="auto",
                   help="the clip model's backend (default auto: optimized when the C++ extension is built)")
    p.add_argument("--no-optimize", action="store_true", help="same as --backend eager")
    p.set_defaults(func=run_repo)

    p = sub.add_parser("serve", help="start tritonserver on a model repository; Ctrl-C stops it")
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--repo", metavar="DIR", help="model repository (squeezetime triton-repo)")
    src.add_argument("--demo", action="store_true", help="serve the demo model (repository in a temp dir)")
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    p.add_argument("--grpc-port", type=int, default=8001)
    p.add_argument("--http-port", type=int, default=8000)
    p.add_argument("--metrics-port", type=int, default=8002)
    p.add_argument("--tritonserver", default=None, metavar="PATH",
                   help="tritonserver binary (default: $SQUEEZETIME_TRITONSERVER, nvidia-pytriton, PATH)")
    p.add_argument("--python", default=None, metavar="PATH",
                   help="Python whose environment runs the models (default: the one holding nvidia-pytriton)")
    p.add_argument("--timeout", type=float, default=180.0, help="seconds to wait for the server to be ready")
    p.add_argument("--log", default=None, metavar="FILE", help="server log file (default: in a temp dir)")
    p.add_argument("--shm-check", choices=SHM_CHECKS, default="error",
                   help="when /dev/shm cannot hold the repository's worst case: refuse to start (error, default), "
                        "warn, or do not check (off)")
    p.set_defaults(func=run_serve)

    p = sub.add_parser("client", help="classify videos through a running Triton server (gRPC)")
    p.add_argument("videos", nargs="+", metavar="VIDEO")
    p.add_argument("--url", default="127.0.0.1:8001", help="gRPC endpoint (default 127.0.0.1:8001)")
    p.add_argument("--views", choices=["1x1", "10x3"], default="1x1")
    p.add_argument("--topk", type=positive_int, default=5)
    p.add_argument("--timeout", type=float, default=60.0, help="seconds per request")
    p.add_argument("--json", action="store_true", help="one JSON object per video on stdout")
    p.add_argument("--timeline", action="store_true",
                   help="stream the timeline of VIDEO (squeezetime_timeline): one line per window as it comes")
    p.add_argument("--stride", type=positive_seconds, default=1.0,
                   help="--timeline: seconds between windows (default 1)")
    p.set_defaults(func=run_client, csv=False, plot=None)


def run_repo(args: argparse.Namespace) -> int:
    import squeezetime
    from ..serving.triton import RepoOptions, write_repository

    options = RepoOptions(max_batch_size=args.max_batch_size, instances=args.instances,
                          video_instances=args.video_instances, kind=args.kind, gpus=args.gpus, dtype=args.dtype,
                          num_threads=args.threads, max_queue_delay_us=args.max_queue_delay_us,
                          max_queue_size=args.max_queue_size, queue_timeout_us=args.queue_timeout_us,
                          max_video_bytes=args.max_video_bytes, backend="eager" if args.no_optimize else args.backend)
    try:
        model = squeezetime.demo_model() if args.demo else None
        out = write_repository(args.out, model, checkpoint=args.checkpoint, arch=args.arch, options=options)
    except squeezetime.SqueezeTimeError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(f"wrote Triton model repository {out} (models: squeezetime, squeezetime_video, squeezetime_timeline)")
    print(f"serve it: squeezetime serve --repo {out}   (or: tritonserver --model-repository {out})")
    return 0


def run_serve(args: argparse.Namespace) -> int:
    import shutil

    import squeezetime
    from ..serving.leftovers import owned_tempdir
    from ..serving.triton import TritonServer, TritonServerError, write_repository
    from ..serving.triton.leftovers import DEMO_REPO_PREFIX

    tmp = None
    try:
        repo = args.repo
        if args.demo:
            # owned (pid file inside): if this launcher is killed, the next serve/TritonServer.start() removes it
            tmp = owned_tempdir(DEMO_REPO_PREFIX)
            repo = write_repository(tmp / "repo", squeezetime.demo_model())
        server = TritonServer(repo, host=args.host, grpc_port=args.grpc_port, http_port=args.http_port,
                              metrics_port=args.metrics_port, binary=args.tritonserver, python=args.python,
                              start_timeout=args.timeout, log_path=args.log, shm_check=args.shm_check)
        stop = {"signal": None}

        def forward(signum, frame):
            stop["signal"] = signum
            raise KeyboardInterrupt

        previous = {s: signal.signal(s, forward) for s in (signal.SIGINT, signal.SIGTERM)}
        try:
            print(f"starting tritonserver ({server.install.describe()}) on {repo} ...", file=sys.stderr, flush=True)
            server.start()
            if server.shm_plan is not None:
                print(server.shm_plan.describe(), file=sys.stderr, flush=True)
            if server.stale_removed:
                print(f"removed {len(server.stale_removed)} leftovers of killed launchers: "
                      + ", ".join(server.stale_removed), file=sys.stderr, flush=True)
            print(f"ready: gRPC {server.grpc_url}  HTTP http://{server.http_url}  metrics {server.metrics_url}",
                  flush=True)
            print("models: squeezetime (CLIP), squeezetime_video (VIDEO), squeezetime_timeline (VIDEO, streamed); "
                  f"log: {server.log_path}; Ctrl-C stops",
                  flush=True)
            code = server.wait()
            print(f"tritonserver exited on its own with status {code}\n{server.log_tail()}", file=sys.stderr)
            return EXIT_USAGE
        except KeyboardInterrupt:
            name = signal.Signals(stop["signal"]).name if stop["signal"] else "SIGINT"
            print(f"{name}: stopping tritonserver ...", file=sys.stderr, flush=True)
            return 0
        finally:
            for s, handler in previous.items():
                signal.signal(s, handler)
            server.cleanup()
            print("tritonserver stopped", file=sys.stderr, flush=True)
    except (TritonServerError, squeezetime.SqueezeTimeError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    finally:
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)


def run_client(args: argparse.Namespace) -> int:
    import squeezetime
    from ..triton import TritonClient, TritonUnavailable

    try:
        client = TritonClient(args.url, timeout=args.timeout)
        client.check()
    except (TritonUnavailable, squeezetime.SqueezeTimeError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    with client:
        if args.timeline:
            return client_timeline(args, client)
        return classify_videos(args.videos, lambda path: client.classify(path, views=args.views, topk=args.topk),
                               args.json, fatal=(TritonUnavailable,))


def client_timeline(args: argparse.Namespace, client) -> int:
    """``client --timeline``: each VIDEO's windows as the server streams them (``squeezetime timeline``'s output)."""
    from ..triton import TritonUnavailable
    from .timeline import show_timeline

    status = 0
    for video in args.videos:
        args.video = video
        code = show_timeline(args, lambda: client.timeline(video, stride=args.stride, topk=args.topk),
                             fatal=(TritonUnavailable,))
        if code == EXIT_USAGE:
            return code
        status = max(status, code)
    return status


__all__ = ["register"]
