"""The GPU table of `make gpu-check`: our GPU path against what a user would pick instead, on one GPU.

Rows (full k400 network, random weights, 16x224x224 clips, float16, channels-last):
- ``eager fp16``: the official network cast to float16, channels-last (``model.half()``);
- ``compile fp16``: ``torch.compile(mode="reduce-overhead")`` of that (inductor + CUDA graphs per shape);
- ``ours fp16``: ``squeezetime.load(..., device="cuda")``'s backend: the optimised network replayed as one CUDA
  graph per batch bucket.
Two measures per row and batch size:
- ``network``: the normalised input already on the device -> logits on the device;
- ``end_to_end``: uint8 clips in pinned host memory -> logits on the host, batches back to back; the eager and
  compiled rows copy, normalise and run one batch after the other (their usual use), ours overlaps the next
  batch's copy with this batch's compute (``submit``).
Rounds are interleaved (one timing of every row per round, CUDA events around ``reps`` calls); the median per
row is reported with clips/s and ratios. Prints JSON; writes DIR/gpu_bench.json and DIR/gpu_bench.png.

    python -m squeezetime.bench.gpu --out build/gpu-check [--batch-sizes 1 8 64 256] [--rounds 5]
"""
from __future__ import annotations

import argparse
import copy
import json
import os
import statistics
import sys
import time

import torch

from .plot import figure

TARGETS = {"min_ratio_to_compile": 1.0, "ratio_batches": (1, 8, 64), "clips_per_s_at_256": 15000,
           "max_ms_at_batch_1": 2.0, "end_to_end_fraction_at_256": 0.8}


def parse_args(argv=None):
    p = argparse.ArgumentParser(prog="python -m squeezetime.bench.gpu", description=__doc__.split("\n\n")[0])
    p.add_argument("--arch", default="k400")
    p.add_argument("--batch-sizes", type=int, nargs="+", default=[1, 8, 64, 256])
    p.add_argument("--compile-batch-sizes", type=int, nargs="+", default=[1, 8, 64],
                   help="batch sizes torch.compile is measured at (each one compiles: ~1 min)")
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--min-seconds", type=float, default=0.05, help="GPU time per timing (sets reps per timing)")
    p.add_argument("--rows", nargs="+", default=["eager fp16", "compile fp16", "ours fp16"])
    p.add_argument("--out", default="build/gpu-bench")
    return p.parse_args(argv)


def _random_clips(n: int, pinned: bool) -> torch.Tensor:
    g = torch.Generator().manual_seed(n)
    clips = torch.randint(0, 256, (n, 16, 224, 224, 3), dtype=torch.uint8, generator=g)
    return clips.pin_memory() if pinned else clips


class EagerRow:
    """The official network in float16, channels-last; ``compiled``: under torch.compile reduce-overhead."""

    def __init__(self, model, compiled: bool):
        from squeezetime.preprocess import normalize_clip

        self.normalize = normalize_clip
        self.net = copy.deepcopy(model).half().to(memory_format=torch.channels_last).eval()
        self.forward = torch.compile(self.net, mode="reduce-overhead", dynamic=False) if compiled else self.net

    def network_input(self, clips: torch.Tensor) -> torch.Tensor:
        x = self.normalize(clips.cuda())  # (N, 3, T, H, W) float32
        return x.half()

    def network(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward(x)

    def end_to_end(self, batches: list) -> list:
        out = []
        for clips in batches:
            x = self.normalize(clips.cuda(non_blocking=True)).half()
            out.append(self.forward(x).float().cpu())
        return out


class OursRow:
    """``squeezetime.load``'s GPU backend: CUDA graphs per batch bucket."""

    def __init__(self, model):
        from squeezetime.backends import create_backend

        self.backend = create_backend("optimized", model, device="cuda")  # float16 by default on a GPU
        self.runner = self.backend.runner

    def network_input(self, clips: torch.Tensor) -> torch.Tensor:
        self.backend.logits(clips)  # captures the bucket and leaves these clips in its static input
        return clips

    def network(self, clips: torch.Tensor) -> torch.Tensor:
        return self.runner.replay(tuple(clips.shape[1:4]), clips.shape[0])

    def end_to_end(self, batches: list) -> list:
        pending = [self.backend.submit(clips) for clips in batches]  # copies overlap the previous batch's compute
        return [p.result() for p in pending]


def timed(fn, reps: int) -> float:
    """Seconds per call: ``reps`` calls between two CUDA events, host waits at the end only."""
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    torch.cuda.synchronize()
    t0 = time.perf_counter()
    start.record()
    for _ in range(reps):
        fn()
    end.record()
    end.synchronize()
    wall = time.perf_counter() - t0
    return max(start.elapsed_time(end) / 1e3, wall) / reps  # a host-bound loop shows in the wall time


def measure(rows: dict, batch: int, rounds: int, min_seconds: float) -> dict:
    """{row: {"network": s per batch, "end_to_end": s per batch}}, rounds interleaved."""
    clips = _random_clips(batch, pinned=True)
    stream = [_random_clips(batch, pinned=True) for _ in range(3)]  # end to end: 3 batches back to back
    inputs = {name: row.network_input(clips) for name, row in rows.items()}
    calls = {}
    for name, row in rows.items():
        x = inputs[name]
        calls[(name, "network")] = (lambda row=row, x=x: row.network(x))
        calls[(name, "end_to_end")] = (lambda row=row: row.end_to_end(stream))
    for fn in calls.values():  # warm-up: compiles, captures, allocations
        for _ in range(3):
            fn()
    reps = {key: max(1, round(min_seconds / max(timed(fn, 1), 1e-6))) for key, fn in calls.items()}
    times: dict = {key: [] for key in calls}
    for _ in range(rounds):
        for key, fn in calls.items():
            per_call = timed(fn, reps[key])
            times[key].append(per_call / (len(stream) if key[1] == "end_to_end" else 1))
    result: dict = {}
    for (name, mode), ts in times.items():
        result.setdefault(name, {})[mode] = statistics.median(ts)
    return result


def summarize(raw: dict) -> list[dict]:
    """One record per (row, batch, mode): ms per batch, clips/s, ratios to the compile and eager rows."""
    records = []
    for batch, rows in raw.items():
        for name, modes in rows.items():
            for mode, seconds in modes.items():
                rec = {"row": name, "batch": batch, "mode": mode, "ms_per_batch": seconds * 1e3,
                       "clips_per_s": batch / seconds}
                for peer in ("compile fp16", "eager fp16"):
                    other = rows.get(peer, {}).get(mode)
                    rec[f"speedup_vs_{peer.split()[0]}"] = other / seconds if other else None
                records.append(rec)
    return records


def check_targets(records: list[dict]) -> dict:
    """The issue's targets for ``ours fp16``: each True/False, or None when not measured."""
    ours = {(r["batch"], r["mode"]): r for r in records if r["row"] == "ours fp16"}
    out = {}
    for b in TARGETS["ratio_batches"]:
        r = ours.get((b, "network"))
        ratio = r and r["speedup_vs_compile"]
        out[f"ours >= 1.0x compile at batch {b}"] = None if not ratio else ratio >= TARGETS["min_ratio_to_compile"]
    r256 = ours.get((256, "network"))
    out["ours >= 15,000 clips/s at batch 256"] = None if not r256 else r256["clips_per_s"] >= TARGETS["clips_per_s_at_256"]
    r1 = ours.get((1, "network"))
    out["ours <= 2 ms at batch 1"] = None if not r1 else r1["ms_per_batch"] <= TARGETS["max_ms_at_batch_1"]
    e256 = ours.get((256, "end_to_end"))
    out["ours end to end >= 80% of network at 256"] = (
        None if not (e256 and r256) else e256["clips_per_s"] >= TARGETS["end_to_end_fraction_at_256"] * r256["clips_per_s"])
    return out


def print_table(records: list[dict]) -> None:
    rows = sorted({r["row"] for r in records})
    batches = sorted({r["batch"] for r in records})
    by = {(r["row"], r["batch"], r["mode"]): r for r in records}
    for mode in ("network", "end_to_end"):
        print(f"\nclips/s, {mode.replace('_', ' ')} (ms per batch)")
        print(f"{'batch':>6} " + " ".join(f"{row:>24}" for row in rows))
        for b in batches:
            cells = []
            for row in rows:
                r = by.get((row, b, mode))
                cells.append(f"{r['clips_per_s']:>12,.0f} ({r['ms_per_batch']:7.2f})" if r else f"{'-':>24}")
            print(f"{b:>6} " + " ".join(f"{c:>24}" for c in cells))


def plot(records: list[dict], path: str, title: str) -> None:
    rows = sorted({r["row"] for r in records})
    batches = sorted({r["batch"] for r in records})
    with figure(path, 1, 2, figsize=(12, 4.5), sharey=True) as (fig, axes):
        width = 0.8 / max(len(rows), 1)
        for ax, mode in zip(axes, ("network", "end_to_end")):
            by = {(r["row"], r["batch"]): r["clips_per_s"] for r in records if r["mode"] == mode}
            for i, row in enumerate(rows):
                xs = [j + i * width for j in range(len(batches))]
                bars = ax.bar(xs, [by.get((row, b), 0) for b in batches], width, label=row)
                ax.bar_label(bars, fmt="%.0f", fontsize=7, rotation=90)
            ax.set_xticks([j + width * (len(rows) - 1) / 2 for j in range(len(batches))],
                          [f"batch {b}" for b in batches])
            ax.set_yscale("log")
            ax.set_title(mode.replace("_", " "))
        axes[0].set_ylabel("clips/s (log)")
        axes[1].legend()
        fig.suptitle(title)


def write_results(args, raw: dict, memory: dict) -> list[dict]:
    records = summarize(raw)
    result = {"device": torch.cuda.get_device_name(), "torch": torch.__version__, "arch": args.arch,
              "clip": [16, 224, 224, 3], "rounds": args.rounds, "records": records, "targets": check_targets(records),
              "memory_after_each_batch_size": memory}
    os.makedirs(args.out, exist_ok=True)
    with open(os.path.join(args.out, "gpu_bench.json"), "w") as f:
        json.dump(result, f, indent=1)
    plot(records, os.path.join(args.out, "gpu_bench.png"), f"SqueezeTime {args.arch} fp16, {result['device']}")
    return records


def main(argv=None) -> int:
    args = parse_args(argv)
    if not torch.cuda.is_available():
        print("error: no CUDA GPU", file=sys.stderr)
        return 2
    import squeezetime
    from tqdm import tqdm

    torch.backends.cudnn.benchmark = True
    model = squeezetime.create_model(args.arch).cuda().eval()
    raw, memory = {}, {}
    with torch.inference_mode():
        built = {"eager fp16": lambda: EagerRow(model, compiled=False),
                 "compile fp16": lambda: EagerRow(model, compiled=True), "ours fp16": lambda: OursRow(model)}
        all_rows = {name: built[name]() for name in args.rows}
        for batch in tqdm(args.batch_sizes, desc="gpu bench", unit="batch size"):
            rows = {name: row for name, row in all_rows.items()
                    if name != "compile fp16" or batch in args.compile_batch_sizes}
            raw[batch] = measure(rows, batch, args.rounds, args.min_seconds)
            if "ours fp16" in rows:  # what the captured buckets (and everything else alive) hold on the device
                memory[batch] = {"buckets": rows["ours fp16"].runner.captured((16, 224, 224)),
                                 "reserved_mib": torch.cuda.memory_reserved() / 2 ** 20}
            records = write_results(args, raw, memory)  # after every batch size: a cut-off run keeps what it has
    print_table(records)
    print(json.dumps(check_targets(records), indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
