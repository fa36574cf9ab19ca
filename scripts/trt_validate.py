#!/usr/bin/env python
"""One-command GPU validation of the TensorRT path (run by scripts/gpu_check_trt.sh / `make gpu-check-trt`).

On a machine with an NVIDIA GPU and Torch-TensorRT (pip install -e '.[tensorrt]'):
1. builds TensorRT engines (fp32 with TF32 off, fp16) of the serving graph, uint8 CLIP -> LOGITS, PROBS,
   profile 1:64:MAX, and writes the fp16 one as a Triton model (build/gpu_check_trt/repo/squeezetime_trt);
2. checks them against the eager float32 model on the CPU at batch 1 and 5: fp32 relative L2 <= 1e-5
   (the golden float32 tolerance), fp16 relative L2 <= 5e-3 and the same top-1;
3. measures clips/s (uint8 clips already on the GPU, normalisation included) of eager fp32, eager fp16,
   torch.compile fp16 and the TensorRT fp16 engine at batch 1, 8, 64 and 256 (where memory allows);
4. prints one JSON object (also written to --json). Exit 0 when parity holds; the speed target
   (TensorRT fp16 >= 5x eager fp32 at batch 64) is reported as `target_met`, not enforced.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time

import torch

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

import squeezetime  # noqa: E402
from squeezetime.export import tensorrt as trt  # noqa: E402
from squeezetime.export.graph import example_clip, serving_graph  # noqa: E402

TOLERANCE = {"fp32": 1e-5, "fp16": 5e-3}


def rel_l2(a, b) -> float:
    a, b = a.double().cpu(), b.double().cpu()
    return float((a - b).norm() / b.norm())


def clips_per_second(fn, clips, min_seconds: float = 2.0, warmup: int = 3) -> float:
    with torch.inference_mode():
        for _ in range(warmup):
            fn(clips)
        torch.cuda.synchronize()
        iters, start = 0, time.perf_counter()
        while True:
            fn(clips)
            iters += 1
            if iters >= 5:
                torch.cuda.synchronize()
                if time.perf_counter() - start >= min_seconds:
                    break
        return iters * clips.shape[0] / (time.perf_counter() - start)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--checkpoint", default=None, help="default: random weights of the full k400 model")
    p.add_argument("--widen-factor", type=float, default=1.0)
    p.add_argument("--batches", type=int, nargs="+", default=[1, 8, 64, 256])
    p.add_argument("--out", default=os.path.join(ROOT, "build", "gpu_check_trt"))
    p.add_argument("--json", default=None)
    p.add_argument("--skip-compile", action="store_true", help="skip torch.compile (slow to compile)")
    args = p.parse_args(argv)
    if not torch.cuda.is_available():
        print(json.dumps({"error": "no CUDA GPU visible"}))
        return 2
    torch_tensorrt = trt.import_torch_tensorrt()
    model = (squeezetime.load_checkpoint(args.checkpoint) if args.checkpoint
             else squeezetime.create_model("k400", widen_factor=args.widen_factor)).eval()
    max_batch = max(args.batches)
    profile = (1, min(64, max_batch), max_batch)
    result = {"device": torch.cuda.get_device_name(), "compute_capability": ".".join(map(str, torch.cuda.get_device_capability())),
              "torch": torch.__version__, "torch_tensorrt": torch_tensorrt.__version__,
              "tensorrt": trt.tensorrt_version(), "cuda": torch.version.cuda,
              "model": {"checkpoint": args.checkpoint, "widen_factor": model.config.get("widen_factor")},
              "profile": list(profile), "parity": {}, "clips_per_s": {}, "build_s": {}}
    os.makedirs(args.out, exist_ok=True)

    engines = {}
    for precision in ("fp32", "fp16"):
        start = time.time()
        engine, meta = trt.build_engine(model, precision, profile)
        result["build_s"][precision] = round(time.time() - start, 1)
        if precision == "fp16":
            model_dir = trt.write_model_dir(os.path.join(args.out, "repo"), engine, meta,
                                            class_names=model.class_names)
            trt.check_engine_compatible(model_dir)
            result["triton_model_dir"] = str(model_dir)
        engines[precision] = trt.EngineRunner(engine)

    ok = True
    for precision, runner in engines.items():
        rows = []
        for batch in (1, 5):
            clips = example_clip(batch, seed=batch)
            with torch.inference_mode():
                eager = model(squeezetime.normalize_clip(clips))
            logits, probs = runner(clips.cuda())
            torch.cuda.synchronize()
            rows.append({"batch": batch, "rel_l2_logits": rel_l2(logits, eager),
                         "rel_l2_probs": rel_l2(probs, eager.softmax(-1)),
                         "top1_equal": bool(torch.equal(logits.argmax(1).cpu(), eager.argmax(1)))})
        passed = all(r["rel_l2_logits"] <= TOLERANCE[precision] and r["rel_l2_probs"] <= TOLERANCE[precision]
                     and (precision == "fp32" or r["top1_equal"]) for r in rows)
        ok &= passed
        result["parity"][precision] = {"tolerance_rel_l2": TOLERANCE[precision], "passed": passed, "runs": rows}

    gpu_model = model.cuda()
    modes = {
        "eager_fp32": serving_graph(gpu_model, "fp32", fold=False).cuda(),
        "eager_fp16": serving_graph(gpu_model, "fp16", fold=False).cuda(),
        "tensorrt_fp16": engines["fp16"],
    }
    if not args.skip_compile:
        modes["torch_compile_fp16"] = torch.compile(serving_graph(gpu_model, "fp16").cuda())
    for name, fn in modes.items():
        result["clips_per_s"][name] = {}
        for batch in args.batches:
            try:
                clips = example_clip(batch).cuda()
                result["clips_per_s"][name][str(batch)] = round(clips_per_second(fn, clips), 1)
            except torch.cuda.OutOfMemoryError:
                result["clips_per_s"][name][str(batch)] = None
            except Exception as e:  # noqa: BLE001 - e.g. a batch outside the engine profile
                result["clips_per_s"][name][str(batch)] = f"error: {type(e).__name__}: {e}"[:200]
            torch.cuda.empty_cache()
    eager64 = result["clips_per_s"]["eager_fp32"].get("64")
    trt64 = result["clips_per_s"]["tensorrt_fp16"].get("64")
    if isinstance(eager64, float) and isinstance(trt64, float):
        result["speedup_trt_fp16_vs_eager_fp32_b64"] = round(trt64 / eager64, 2)
        result["target_met"] = trt64 >= 5 * eager64
    result["parity_passed"] = ok
    text = json.dumps(result, indent=1)
    print(text)
    if args.json:
        with open(args.json, "w") as f:
            f.write(text + "\n")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
