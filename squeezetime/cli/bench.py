"""``squeezetime bench``: latency of the full network per inference path, interleaved in one process.

Paths: eager (the official maths, unoptimised), compile (torch.compile of the eager model, inductor, freezing
on), opt-fp32 / opt-fp32-unfused (squeezetime.optimize with / without the fused operators), opt-bf16 (CPU),
opt-fp16 (CUDA; the served GPU path, CUDA graphs per batch bucket, is timed by ``python -m squeezetime.bench.gpu``,
the table of `make gpu-check`). Rounds are interleaved (one call of every path per round), warm-up
excluded; reports the median per-clip latency, clips/s and the ratio to eager, plus operator micro-benchmarks.
Writes DIR/bench.json and DIR/bench.png and prints the JSON.

``--peers``: the engines a user could pick instead (eager, torch.compile fp32/bf16, ONNX Runtime, OpenVINO
fp32/bf16) and every backend of ours through ``squeezetime.load``, all from uint8 clips, batch 1 and 8, rounds
interleaved; DIR/peers.json and DIR/peers.png (ratios to eager). The rows are one list, ``PEERS``.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time

CPU_PATHS = ["eager", "compile", "opt-fp32", "opt-fp32-unfused", "opt-bf16"]
CUDA_PATHS = ["eager", "compile", "opt-fp32", "opt-fp32-unfused", "opt-fp16"]
ALL_PATHS = sorted(set(CPU_PATHS + CUDA_PATHS + ["opt-fp32-compile"]))


def register(sub) -> None:
    p = sub.add_parser("bench", help="benchmark inference paths (eager, torch.compile, optimised fp32/bf16/fp16)")
    p.add_argument("--arch", default="k400", help="named configuration (random weights; default k400)")
    p.add_argument("--widen-factor", type=float, default=1.0)
    p.add_argument("--size", type=int, default=224, help="frame height and width")
    p.add_argument("--batch-sizes", type=int, nargs="+", default=None, help="default 1 (--peers: 1 8)")
    p.add_argument("--rounds", type=int, default=5, help="timed rounds per path and batch size")
    p.add_argument("--warmup", type=int, default=2, help="untimed calls per path first")
    p.add_argument("--paths", nargs="+", default=None, choices=ALL_PATHS,
                   help=f"default: {' '.join(CPU_PATHS)} (CPU) / {' '.join(CUDA_PATHS)} (CUDA)")
    p.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    p.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (default: torch's)")
    p.add_argument("--no-micro", action="store_true", help="skip the operator micro-benchmarks")
    p.add_argument("--out", default="bench-results", metavar="DIR")
    p.add_argument("--peers", action="store_true",
                   help="instead: our backends against torch.compile, ONNX Runtime and OpenVINO on uint8 clips "
                        f"(rows: {', '.join(name for name, _ in PEERS)}); --batch-sizes default 1 8")
    p.add_argument("--rows", nargs="+", default=None, metavar="ROW", help="with --peers: only these rows (eager first)")
    p.add_argument("--settle", type=float, default=0.2, metavar="S",
                   help="with --peers: pause before each timed call (default 0.2 s). ONNX Runtime's threads spin "
                        "for tens of ms after a run and took the cores from the next row: measured here, ours "
                        "optimized 105 ms alone, 154 ms right after an ONNX Runtime call, 111 ms 0.1 s after")
    p.set_defaults(func=run)


def _sync(device: str) -> None:
    import torch

    if device == "cuda":
        torch.cuda.synchronize()


def build_path(name: str, model, example, device: str):
    """A callable normalised clip -> logits for the path (compilation happens in warm-up). The backends are
    built as ``squeezetime.load`` builds them (on CUDA their optimised module, without the CUDA graphs); the
    others are ablations (compile, unfused)."""
    import torch

    import squeezetime
    from ..backends import create_backend

    backends = {"eager": ("eager", None), "opt-fp32": ("optimized", "float32"), "opt-bf16": ("optimized", "bfloat16"),
                "opt-fp16": ("optimized", "float16")}
    if name in backends:  # the Classifier's backends, as every serving path builds them
        backend, dtype = backends[name]
        return create_backend(backend, model, device=device, dtype=dtype).module  # takes normalised float clips
    if name == "compile":
        import torch._inductor.config as inductor_config

        inductor_config.freezing = True
        return torch.compile(model, dynamic=False)
    if name == "opt-fp32-unfused":
        return squeezetime.optimize(model, fused=False)
    if name == "opt-fp32-compile":
        return squeezetime.optimize(model, compile=True)
    raise ValueError(name)


def latency_summary(times: dict[str, list[float]], batch: int) -> dict:
    """Seconds per call of each path -> medians, per-clip figures and the ratio to eager (when measured)."""
    eager = statistics.median(times["eager"]) if times.get("eager") else None
    out = {}
    for name, ts in times.items():
        median = statistics.median(ts)
        out[name] = {"median_ms": median * 1e3, "per_clip_ms": median * 1e3 / batch, "clips_per_s": batch / median,
                     "min_ms": min(ts) * 1e3, "speedup_vs_eager": (eager / median) if eager else None}
    return out


def time_call(fn, *args, device="cpu") -> float:
    _sync(device)
    t0 = time.perf_counter()
    fn(*args)
    _sync(device)
    return time.perf_counter() - t0


def micro_benchmarks(device: str, rounds: int) -> dict:
    """squeeze_time vs a copy of the same bytes; ctl_combine vs its eager composition."""
    import torch

    from squeezetime import ops

    res = {"extension": ops.extension_available()}
    frames = torch.randint(0, 256, (8, 16, 224, 224, 3), dtype=torch.uint8, device=device)
    nbytes = frames.numel() * (1 + 4)  # read uint8, write float32
    reps = max(rounds * 4, 10)
    # the plain copy of the same bytes: uint8 -> new float32 tensor (same reads, writes and allocation);
    # also a copy into a preallocated buffer (no page faults), the bandwidth ceiling of this machine
    src = torch.empty(nbytes // 2, dtype=torch.uint8, device=device)
    dst = torch.empty_like(src)
    t_squeeze, t_copy, t_copy_pre = [], [], []
    for _ in range(reps):
        t_squeeze.append(time_call(ops.squeeze_time, frames, device=device))
        t_copy.append(time_call(frames.float, device=device))
        t_copy_pre.append(time_call(dst.copy_, src, device=device))
    ts, tc, tp = statistics.median(t_squeeze), statistics.median(t_copy), statistics.median(t_copy_pre)
    res["squeeze_time"] = {"shape": list(frames.shape), "ms": ts * 1e3, "copy_same_bytes_ms": tc * 1e3,
                           "copy_preallocated_ms": tp * 1e3, "GB_per_s": nbytes / ts / 1e9,
                           "fraction_of_copy_bandwidth": tc / ts, "fraction_of_preallocated_copy": tp / ts,
                           "eager_normalize_fold_ms": None}
    from squeezetime.preprocess import normalize_clip

    if device == "cpu":
        n, t, h, w, _ = frames.shape
        te = [time_call(lambda: normalize_clip(frames).reshape(n, 3 * t, h, w)) for _ in range(max(reps // 4, 3))]
        res["squeeze_time"]["eager_normalize_fold_ms"] = statistics.median(te) * 1e3
    if device == "cpu" and ops.has_kernel("squeeze_time.out") and ops.has_kernel("to_channels_last"):
        res["network_input"] = network_input_benchmark(frames[:1], reps)
    dtypes = [torch.float32, torch.bfloat16] if device == "cpu" else [torch.float32, torch.float16]
    res["ctl_combine"] = []
    for dtype in dtypes:
        for shape in [(1, 64, 56, 56), (8, 64, 56, 56), (1, 512, 7, 7)]:
            t, s, g, r = [torch.randn(shape, device=device).to(dtype).contiguous(memory_format=torch.channels_last)
                          for _ in range(4)]
            scale, shift = torch.randn(shape[1], device=device), torch.randn(shape[1], device=device)
            sc, sh = scale.to(dtype).view(1, -1, 1, 1), shift.to(dtype).view(1, -1, 1, 1)

            def eager():
                return torch.relu((t + s * torch.sigmoid(g)) * sc + sh + r)

            def fused():
                return ops.ctl_combine(t, s, g, scale, shift, r, True)
            for f in (eager, fused):
                f()
            te, tf = [], []
            for _ in range(reps):
                te.append(time_call(eager, device=device))
                tf.append(time_call(fused, device=device))
            res["ctl_combine"].append({"dtype": str(dtype).replace("torch.", ""), "shape": list(shape),
                                       "eager_ms": statistics.median(te) * 1e3, "fused_ms": statistics.median(tf) * 1e3,
                                       "speedup": statistics.median(te) / statistics.median(tf)})
    return res


def network_input_benchmark(clip, reps: int) -> dict:
    """One uint8 clip into the optimised network's channels-last float input buffer: squeeze_time then
    to_channels_last (two passes, what ``forward`` on normalised clips does) against squeeze_time.out (one pass,
    what ``forward_frames`` does), interleaved."""
    import torch

    from squeezetime import MEAN, STD, ops

    mean, std = list(MEAN), list(STD)
    n, t, h, w, c = clip.shape
    buf = torch.empty(n, c * t, h, w, memory_format=torch.channels_last)
    paths = {"two_passes": lambda: torch.ops.squeezetime.to_channels_last(ops.squeeze_time(clip, mean, std), out=buf),
             "one_pass": lambda: torch.ops.squeezetime.squeeze_time.out(clip, mean, std, out=buf)}
    times: dict[str, list[float]] = {k: [] for k in paths}
    for _ in range(reps):
        for k, f in paths.items():
            times[k].append(time_call(f))
    ms = {k: statistics.median(v) * 1e3 for k, v in times.items()}
    return {"shape": list(clip.shape), "two_passes_ms": ms["two_passes"], "one_pass_ms": ms["one_pass"],
            "speedup": ms["two_passes"] / ms["one_pass"]}


def plot(results: dict, path: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    batches = list(results["latency"])
    paths = list(next(iter(results["latency"].values())))
    fig, ax = plt.subplots(figsize=(2.2 + 1.3 * len(paths) * len(batches), 4))
    width = 0.8 / len(batches)
    for i, b in enumerate(batches):
        speed = [results["latency"][b][p]["speedup_vs_eager"] for p in paths]
        bars = ax.bar([x + i * width for x in range(len(paths))], speed, width, label=f"batch {b}")
        ax.bar_label(bars, fmt="%.2fx", fontsize=8)
    ax.set_xticks([x + width * (len(batches) - 1) / 2 for x in range(len(paths))], paths, rotation=20)
    ax.axhline(1.0, color="grey", lw=0.8)
    ax.set_ylabel("speed-up vs eager (median latency)")
    ax.set_title(f"SqueezeTime {results['config']['arch']} 16x{results['config']['size']}^2, {results['machine']['device']}")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


# --- peers: every row is a factory (model, threads) -> callable(uint8 clips (N, T, H, W, 3)) -> logits. Each takes
# the decoder's uint8 clip, so normalisation is inside every timing. Other modules append rows (int8 paths).

def _ours(backend: str, dtype: str | None = None):
    def factory(model, threads):
        import squeezetime

        return squeezetime.load(model, backend=backend, dtype=dtype, threads=threads).backend.logits
    return factory


def _ours_int8(model, threads):
    from ..quantize import int8_peer  # squeezetime quantize's engine (OpenVINO + NNCF), 16 generated clips, no gate

    return int8_peer(model, threads)


def _torch_eager(model, threads):
    from squeezetime.preprocess import normalize_clip

    return lambda clips: model(normalize_clip(clips))


def _torch_compile(dtype_name: str):
    def factory(model, threads):
        import copy

        import torch
        import torch._inductor.config as inductor_config

        from squeezetime.preprocess import normalize_clip

        dtype = getattr(torch, dtype_name)
        net = model if dtype == torch.float32 else copy.deepcopy(model).to(dtype)
        inductor_config.freezing = True
        return torch.compile(lambda clips: net(normalize_clip(clips).to(dtype)).float(), dynamic=False)
    return factory


def _onnx_path(model):
    from squeezetime.backends.onnxruntime import default_image_size, onnx_file

    return onnx_file(model, default_image_size(model))[0]  # the project's ONNX export, cached on disk


def _onnxruntime_peer(model, threads):
    from squeezetime.export.onnx import onnx_session, run_onnxruntime

    session = onnx_session(_onnx_path(model), threads=threads)
    return lambda clips: run_onnxruntime(session, clips)[0]


def _openvino_peer(hint: str):
    def factory(model, threads):
        import numpy as np
        import openvino as ov
        import torch

        compiled = ov.Core().compile_model(ov.convert_model(_onnx_path(model)), "CPU", {
            "INFERENCE_PRECISION_HINT": hint, "INFERENCE_NUM_THREADS": threads})
        request = compiled.create_infer_request()

        def call(clips):
            request.infer({0: np.ascontiguousarray(clips.numpy())})
            return torch.from_numpy(request.get_output_tensor(0).data.copy())
        return call
    return factory


PEERS: list[tuple[str, object]] = [
    ("eager", _torch_eager),  # the network as written, normalize_clip + forward: the 1.0x of every ratio
    ("torch.compile fp32", _torch_compile("float32")),
    ("torch.compile bf16", _torch_compile("bfloat16")),
    ("onnxruntime fp32", _onnxruntime_peer),
    ("openvino fp32", _openvino_peer("f32")),
    ("openvino bf16", _openvino_peer("bf16")),
    ("ours eager", _ours("eager")),
    ("ours optimized fp32", _ours("optimized")),
    ("ours optimized bf16", _ours("optimized", "bfloat16")),
    ("ours onnxruntime", _ours("onnxruntime")),
    ("ours openvino fp32", _ours("openvino")),
    ("ours openvino bf16", _ours("openvino", "bfloat16")),
    ("ours auto fp32", _ours("auto")),
    ("ours int8", _ours_int8),  # also what "openvino int8" would be: NNCF on the same OpenVINO model
]


def machine_info() -> dict:
    """CPU model and the flags that decide the fast paths (lscpu), threads, library versions."""
    import subprocess

    import torch

    from squeezetime.backends.engine_cache import package_version

    info = {"cpu_count": os.cpu_count(), "threads": torch.get_num_threads(), "torch": torch.__version__,
            "onnxruntime": package_version("onnxruntime"), "openvino": package_version("openvino")}
    try:
        lscpu = subprocess.run(["lscpu"], capture_output=True, text=True, timeout=10).stdout
        fields = dict(line.split(":", 1) for line in lscpu.splitlines() if ":" in line)
        info["cpu"] = fields.get("Model name", "").strip()
        flags = fields.get("Flags", "").split()
        info["simd_flags"] = [f for f in flags if f.startswith(("avx", "amx", "fma")) or "vnni" in f or "bf16" in f]
    except (OSError, subprocess.SubprocessError):
        info["cpu"] = platform.processor() or platform.machine()
    return info


def run_peers(args: argparse.Namespace) -> int:
    """Every row of PEERS on the same uint8 clips, batch by batch, rounds interleaved; JSON + PNG."""
    import gc

    import torch
    from tqdm import tqdm

    import squeezetime

    if args.threads:
        torch.set_num_threads(args.threads)
    rows = [(n, f) for n, f in PEERS if args.rows is None or n in args.rows or n == "eager"]
    batches = args.batch_sizes or [1, 8]
    torch.manual_seed(0)
    model = squeezetime.create_model(args.arch, widen_factor=args.widen_factor).eval()
    threads = torch.get_num_threads()
    results = {"config": {"arch": args.arch, "widen_factor": args.widen_factor, "size": args.size, "frames": 16,
                          "input": "uint8 clips (N, 16, H, W, 3), normalisation inside every row",
                          "rounds": args.rounds, "warmup": args.warmup, "settle_s": args.settle,
                          "paths": [n for n, _ in rows],
                          "command": "squeezetime " + " ".join(sys.argv[1:])},
               "machine": {"device": "cpu", **machine_info()}, "latency": {}, "setup_s": {}, "failed": {}}
    total = len(batches) * len(rows) * (args.rounds + args.warmup)
    with torch.inference_mode(), tqdm(total=total, desc="bench --peers", unit="call", file=sys.stderr) as bar:
        for b in batches:
            clips = torch.randint(0, 256, (b, 16, args.size, args.size, 3), dtype=torch.uint8,
                                  generator=torch.Generator().manual_seed(b))
            fns = {}
            for name, factory in rows:
                bar.set_postfix_str(f"batch {b}: {name} (build, warm-up)")
                t0 = time.perf_counter()
                try:
                    with torch.inference_mode(False):  # exporters and compilers trace outside inference mode
                        fns[name] = factory(model, threads)
                    for _ in range(args.warmup):
                        fns[name](clips)
                        bar.update(1)
                except Exception as e:  # noqa: BLE001 - a row that cannot run here is reported, not fatal
                    results["failed"][f"{name}@{b}"] = f"{type(e).__name__}: {e}"
                    print(f"bench --peers: {name} at batch {b} failed: {type(e).__name__}: {e}", file=sys.stderr)
                    fns.pop(name, None)
                results["setup_s"][f"{name}@{b}"] = time.perf_counter() - t0
            times = {name: [] for name in fns}
            for _ in range(args.rounds):
                for name, fn in fns.items():
                    bar.set_postfix_str(f"batch {b}: {name}")
                    time.sleep(args.settle)  # the previous row's thread pool may still be spinning
                    times[name].append(time_call(fn, clips))
                    bar.update(1)
            results["latency"][str(b)] = latency_summary(times, b)
            del fns
            gc.collect()
    results["config"]["paths"] = [n for n, _ in rows if all(n in lat for lat in results["latency"].values())]
    os.makedirs(args.out, exist_ok=True)
    json_path, png_path = os.path.join(args.out, "peers.json"), os.path.join(args.out, "peers.png")
    with open(json_path, "w") as f:
        json.dump(results, f, indent=2)
    if all(lat.get("eager") for lat in results["latency"].values()):
        plot({**results, "latency": {b: {n: lat[n] for n in results["config"]["paths"]}
                                     for b, lat in results["latency"].items()}}, png_path)
    print(json.dumps(results, indent=2))
    print(f"wrote {json_path} and {png_path}", file=sys.stderr)
    return 0 if not results["failed"] else 1


def run(args: argparse.Namespace) -> int:
    import torch
    from tqdm import tqdm

    import squeezetime
    from squeezetime import ops

    if args.peers:
        return run_peers(args)
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.device == "cuda" and not torch.cuda.is_available():
        print("error: --device cuda but no CUDA GPU", file=sys.stderr)
        return 2
    paths = args.paths or (CPU_PATHS if args.device == "cpu" else CUDA_PATHS)
    args.batch_sizes = args.batch_sizes or [1]
    torch.manual_seed(0)
    model = squeezetime.create_model(args.arch, widen_factor=args.widen_factor).to(args.device)
    device_name = torch.cuda.get_device_name() if args.device == "cuda" else (platform.processor() or platform.machine())
    results = {"config": {"arch": args.arch, "widen_factor": args.widen_factor, "size": args.size, "frames": 16,
                          "rounds": args.rounds, "warmup": args.warmup, "paths": paths},
               "machine": {"device": args.device if args.device == "cpu" else device_name, "cpu": device_name,
                           "threads": torch.get_num_threads(), "cpu_count": os.cpu_count(),
                           "torch": torch.__version__, "extension": ops.extension_available()},
               "latency": {}, "setup_s": {}}
    total = len(args.batch_sizes) * len(paths) * (args.rounds + args.warmup)
    with torch.inference_mode(), tqdm(total=total, desc="bench", unit="call", file=sys.stderr) as bar:
        for b in args.batch_sizes:
            x = torch.randn(b, 3, 16, args.size, args.size, device=args.device)
            fns = {}
            for name in paths:
                bar.set_postfix_str(f"batch {b}: {name} (warm-up)")
                t0 = time.perf_counter()
                fns[name] = build_path(name, model, x, args.device)
                for _ in range(args.warmup):
                    fns[name](x)
                    bar.update(1)
                _sync(args.device)
                results["setup_s"][f"{name}@{b}"] = time.perf_counter() - t0
            times = {name: [] for name in paths}
            for _ in range(args.rounds):
                for name in paths:
                    bar.set_postfix_str(f"batch {b}: {name}")
                    times[name].append(time_call(fns[name], x, device=args.device))
                    bar.update(1)
            results["latency"][str(b)] = latency_summary(times, b)
            del fns
    if not args.no_micro:
        results["micro"] = micro_benchmarks(args.device, args.rounds)
    os.makedirs(args.out, exist_ok=True)
    json_path, png_path = os.path.join(args.out, "bench.json"), os.path.join(args.out, "bench.png")
    with open(json_path, "w") as f:
        json.dump(results, f, indent=2)
    if "eager" in paths:
        plot(results, png_path)
    print(json.dumps(results, indent=2))
    print(f"wrote {json_path} and {png_path}", file=sys.stderr)
    return 0
