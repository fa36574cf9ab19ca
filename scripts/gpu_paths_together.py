"""Regression check of issue 20's failure 1: every GPU path built and run in ONE process, in the order that
once died with "CUDA error: an illegal memory access": eager fp32, eager fp16 and bf16 (copies cast to
channels-last), our optimized backend fp32 and fp16 (CUDA graphs per bucket), then
torch.compile(mode="reduce-overhead") fp16, then our backend again; full k400 network unless --width is given.
Every path's logits are compared with eager fp32 (argmax agreement and relative L2 within the path's precision).
Exit 0 when all ran and agreed."""
import argparse
import copy
import sys

import torch

import squeezetime
from squeezetime.backends import create_backend

TOL = {torch.float32: 1e-4, torch.float16: 2e-2, torch.bfloat16: 6e-2}


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--width", type=float, default=1.0)
    p.add_argument("--batch", type=int, default=1)
    args = p.parse_args()
    torch.manual_seed(0)
    model = squeezetime.create_model("k400", widen_factor=args.width).cuda().eval()
    clips = torch.randint(0, 256, (args.batch, 16, 224, 224, 3), dtype=torch.uint8)
    x = squeezetime.normalize_clip(clips).cuda()
    failures = []

    def check(name, logits, dtype, want):
        rel = float((logits.double().cpu() - want.double()).norm() / want.double().norm())
        ok = rel <= TOL[dtype]
        print(f"{name:<34} rel L2 {rel:.2e} {'ok' if ok else 'FAIL'}", flush=True)
        if not ok:
            failures.append(name)

    with torch.inference_mode():
        want = model(x).float().cpu()
        for dtype in (torch.float16, torch.bfloat16):
            cast = copy.deepcopy(model).to(dtype=dtype, memory_format=torch.channels_last)
            check(f"eager {dtype}", cast(x.to(dtype)).float(), dtype, want)
        ours = {dtype: create_backend("optimized", model, device="cuda", dtype=dtype)
                for dtype in (torch.float32, torch.float16)}
        for dtype, backend in ours.items():
            check(f"ours {dtype} (graphs)", backend.logits(clips), dtype, want)
        compiled = torch.compile(copy.deepcopy(model).half().to(memory_format=torch.channels_last),
                                 mode="reduce-overhead")
        for _ in range(3):
            out = compiled(x.half())
        check("compile reduce-overhead fp16", out.float(), torch.float16, want)
        for dtype, backend in ours.items():
            check(f"ours {dtype} again, after compile", backend.logits(clips), dtype, want)
        torch.cuda.synchronize()
    print("gpu_paths_together:", "all paths ran and agreed" if not failures else f"FAILED: {failures}")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
