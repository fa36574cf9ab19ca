"""int8 (``squeezetime quantize``'s OpenVINO/NNCF network) against our float32 and bfloat16 paths.

    python scripts/bench_int8.py --out build/bench_int8            # JSON on stdout, int8.json + int8.png in --out

1. Accuracy, demo model: calibrated on generated clips (seed 20_000), then top-1 agreement with float32 (eager)
   on 400 held-out generated clips (seed 10_000: the held-out set of scripts/train_demo.py) and both accuracies.
2. Speed, the full-width k400 network (random weights: speed does not depend on them): ours fp32 and bf16
   (``squeezetime.load(..., backend="optimized", dtype=...)``) and int8, at batch 1 and 8, rounds interleaved
   (each round times every path once), median milliseconds and ratios to our fp32 and bf16.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time

import torch
from tqdm import tqdm

import squeezetime
from squeezetime.backends.int8 import Int8Artifact, Int8Backend
from squeezetime.quantize import quantize_ir
from squeezetime.synthetic.generator import make_dataset


def int8_backend(model, calibration) -> Int8Backend:
    xml, weights = quantize_ir(model, calibration, image_size=calibration.shape[2])
    return Int8Backend(Int8Artifact({}, xml, weights), torch.get_num_threads())


def accuracy(calibration_clips: int, heldout_clips: int) -> dict:
    model = squeezetime.demo_model()
    calibration, _ = make_dataset(calibration_clips, seed=20_000)
    clips, labels = make_dataset(heldout_clips, seed=10_000)
    int8 = int8_backend(model, calibration)
    fp32 = squeezetime.load(model, backend="eager")
    a = fp32.infer(clips).logits.argmax(1)
    b = torch.cat([int8.logits(torch.from_numpy(clips[i:i + 8])) for i in range(0, len(clips), 8)]).argmax(1)
    truth = torch.from_numpy(labels)
    return {"calibration_clips": calibration_clips, "heldout_clips": heldout_clips,
            "agreement": float((a == b).double().mean()), "fp32_accuracy": float((a == truth).double().mean()),
            "int8_accuracy": float((b == truth).double().mean())}


def speed(rounds: int, batches: list[int], calibration_clips: int, skip: list[str]) -> dict:
    torch.manual_seed(0)
    model = squeezetime.create_model("k400").eval()
    calibration, _ = make_dataset(calibration_clips, seed=20_000)
    paths = {"ours fp32": squeezetime.load(model, backend="optimized").backend.logits,
             "ours bf16": squeezetime.load(model, backend="optimized", dtype="bfloat16").backend.logits,
             "ours int8": int8_backend(model, calibration).logits}
    paths = {k: v for k, v in paths.items() if k not in skip}
    clips = torch.from_numpy(make_dataset(max(batches), seed=30_000)[0])
    times = {(name, b): [] for name in paths for b in batches}
    with torch.inference_mode():
        for name, call in paths.items():  # warm-up: first calls pack weights / compile
            for b in batches:
                call(clips[:b])
        for _ in tqdm(range(rounds), desc="rounds", file=sys.stderr):
            for b in batches:
                for name, call in paths.items():
                    start = time.perf_counter()
                    call(clips[:b])
                    times[(name, b)].append(time.perf_counter() - start)
    rows = []
    for b in batches:
        ms = {name: 1000 * statistics.median(times[(name, b)]) for name in paths}
        for name in paths:
            rows.append({"path": name, "batch": b, "ms": round(ms[name], 1),
                         "clips_per_s": round(1000 * b / ms[name], 2),
                         "speedup_vs_fp32": round(ms["ours fp32"] / ms[name], 3) if "ours fp32" in ms else None,
                         "speedup_vs_bf16": round(ms["ours bf16"] / ms[name], 3) if "ours bf16" in ms else None})
    return {"rounds": rounds, "rows": rows}


def draw(result: dict, path: str) -> None:
    from squeezetime.bench.plot import figure

    rows = result["speed"]["rows"]
    batches = sorted({r["batch"] for r in rows})
    names = list(dict.fromkeys(r["path"] for r in rows))
    with figure(path, figsize=(7, 4), dpi=100) as (_, ax):
        width = 0.8 / len(names)
        for i, name in enumerate(names):
            values = [next(r["clips_per_s"] for r in rows if r["path"] == name and r["batch"] == b) for b in batches]
            ax.bar([x + i * width for x in range(len(batches))], values, width, label=name)
        ax.set_xticks([x + width * (len(names) - 1) / 2 for x in range(len(batches))], [f"batch {b}" for b in batches])
        ax.set_ylabel("clips / s (median of interleaved rounds)")
        acc = result.get("accuracy") or {}
        ax.set_title(f"full-width k400, {result['machine']['threads']} threads; demo int8 agreement "
                     f"{100 * acc.get('agreement', float('nan')):.1f} %", fontsize=9)
        ax.legend()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", default="build/bench_int8")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--batches", type=int, nargs="+", default=[1, 8])
    parser.add_argument("--heldout", type=int, default=400)
    parser.add_argument("--calibration", type=int, default=64, help="calibration clips of the demo model")
    parser.add_argument("--speed-calibration", type=int, default=16, help="calibration clips of the k400 network")
    parser.add_argument("--skip", nargs="*", default=[], help="paths to leave out of the speed part")
    parser.add_argument("--no-accuracy", action="store_true")
    parser.add_argument("--no-speed", action="store_true")
    args = parser.parse_args()
    os.makedirs(args.out, exist_ok=True)
    result = {"machine": {"cpu": platform.processor() or platform.machine(), "threads": torch.get_num_threads(),
                          "torch": torch.__version__, "openvino": __import__("openvino").__version__,
                          "nncf": __import__("nncf").__version__,
                          "load_average": os.getloadavg()}}
    if not args.no_accuracy:
        result["accuracy"] = accuracy(args.calibration, args.heldout)
        print(json.dumps(result["accuracy"]), file=sys.stderr)
    if not args.no_speed:
        result["speed"] = speed(args.rounds, args.batches, args.speed_calibration, args.skip)
    result["machine"]["load_average_after"] = os.getloadavg()
    with open(os.path.join(args.out, "int8.json"), "w") as f:
        json.dump(result, f, indent=1)
    if "speed" in result:
        draw(result, os.path.join(args.out, "int8.png"))
    print(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
