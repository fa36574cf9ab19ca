"""One small call of each CUDA operator and one CUDA graph replay of the served path, small enough for
`compute-sanitizer --tool memcheck` (run by scripts/gpu_check.sh). Exit status 0 when every call ran and agreed
with its reference; the sanitizer reports any out-of-bounds or misaligned access on its own."""
import sys

import torch

import squeezetime
from squeezetime import ops


def main() -> int:
    st, stats = torch.ops.squeezetime, (list(squeezetime.MEAN), list(squeezetime.STD))
    g = torch.Generator().manual_seed(0)
    f = torch.randint(0, 256, (2, 3, 5, 37, 3), dtype=torch.uint8, generator=g)
    fc = f.cuda()
    ok = torch.equal(st.squeeze_time(fc, *stats).cpu(), ops.squeeze_time_reference(f, *stats))
    for dtype in (torch.float32, torch.float16, torch.bfloat16):
        out = torch.empty(2, 9, 5, 37, dtype=dtype, device="cuda", memory_format=torch.channels_last)
        st.squeeze_time.out(fc, *stats, out=out)
        ok &= torch.equal(out.cpu(), ops.squeeze_time_reference(f, *stats).to(dtype))
        x = torch.randn(3, 33, 5, 7, generator=g).to(dtype)
        w1, b1, w2 = (torch.randn(*s, generator=g) for s in ((33, 33), (33,), (33, 33)))
        for layout in (torch.contiguous_format, torch.channels_last):
            xl = x.contiguous(memory_format=layout)
            got = st.gate_scale(xl.cuda(), w1.cuda(), b1.cuda(), w2.cuda()).cpu()
            ok &= torch.allclose(got.float(), ops.gate_scale_reference(xl, w1, b1, w2).float(), rtol=2e-2, atol=2e-2)
            got = st.ctl_combine(*(t.cuda() for t in (xl, xl, xl, b1, b1, xl)), True).cpu()
            ok &= torch.allclose(got.float(), ops.ctl_combine_reference(xl, xl, xl, b1, b1, xl, True).float(),
                                 rtol=2e-2, atol=2e-2)
        y = torch.randn(2, 33, 5, 7, generator=g)
        ok &= torch.equal(st.to_channels_last(y.cuda(), dtype).cpu(), y.to(dtype).contiguous(memory_format=torch.channels_last))
    # one graph replay of the served path: a small network, two buckets (padding and a replay of a captured graph)
    model = squeezetime.create_model("k400", widen_factor=0.0625, num_classes=5, num_frames=4).cuda().eval()
    backend = squeezetime.backends.create_backend("optimized", model, device="cuda")
    clips = torch.randint(0, 256, (3, 4, 32, 32, 3), dtype=torch.uint8, generator=g)
    first, again = backend.logits(clips), backend.logits(clips)
    with torch.inference_mode():
        eager = backend.module.forward_frames(clips.cuda()).float().cpu()
    ok &= torch.equal(first, again) and torch.allclose(first, eager, rtol=5e-3, atol=5e-3)
    torch.cuda.synchronize()
    print("gpu_sanitize:", "every call agreed with its reference" if ok else "MISMATCH")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
