"""Fake (meta) kernels: shapes, dtypes and strides of the operators' outputs, so that torch.compile and
torch.export trace through ``torch.ops.squeezetime.*`` without running them."""
from __future__ import annotations

import torch
from torch import Tensor


def choose_nhwc(tensors: list[Tensor]) -> bool:
    """The layout rule of csrc/common.h (choose_nhwc), so the fake output has the kernel's strides."""
    t = tensors[0]
    if t.shape[1] > 1 and all(x.stride(1) == 1 for x in tensors):
        return True
    if all(x.shape[3] == 1 or x.stride(3) == 1 for x in tensors):
        return False
    return t.is_contiguous(memory_format=torch.channels_last) and not t.is_contiguous()


def register() -> None:
    def _check_squeeze_time(frames, mean, std):
        torch._check(frames.dtype == torch.uint8, lambda: f"squeeze_time: frames must be uint8, got {frames.dtype}")
        torch._check(frames.dim() == 5 and frames.shape[4] == 3, lambda: "squeeze_time: frames must be (N, T, H, W, 3)")
        torch._check(len(mean) == 3 and len(std) == 3, lambda: "squeeze_time: mean and std need 3 values (RGB)")
        n, t, h, w, _ = frames.shape
        return (n, 3 * t, h, w)

    @torch.library.register_fake("squeezetime::squeeze_time")
    def _squeeze_time_fake(frames, mean, std):
        return frames.new_empty(_check_squeeze_time(frames, mean, std), dtype=torch.float32)

    @torch.library.register_fake("squeezetime::squeeze_time.out")
    def _squeeze_time_out_fake(frames, mean, std, *, out):
        shape = _check_squeeze_time(frames, mean, std)
        torch._check(tuple(out.shape) == shape, lambda: f"squeeze_time.out: out must be {shape}")
        torch._check(out.dtype in (torch.float32, torch.bfloat16, torch.float16),
                     lambda: f"squeeze_time.out: out must be float32, bfloat16 or float16, got {out.dtype}")
        return out  # written in place

    @torch.library.register_fake("squeezetime::ctl_combine")
    def _ctl_combine_fake(temporal, short, glo, scale, shift, residual, relu):
        ins = [temporal, short, glo] + ([residual] if residual is not None else [])
        for x in ins[1:]:
            torch._check(x.shape == temporal.shape, lambda: "ctl_combine: all inputs must have temporal's shape")
            torch._check(x.dtype == temporal.dtype, lambda: "ctl_combine: all inputs must have temporal's dtype")
        fmt = torch.channels_last if choose_nhwc(ins) else torch.contiguous_format
        return torch.empty(temporal.shape, dtype=temporal.dtype, device=temporal.device, memory_format=fmt)

    @torch.library.register_fake("squeezetime::gate_scale")
    def _gate_scale_fake(x, w1, b1, w2):
        torch._check(x.dim() == 4, lambda: "gate_scale: x must be (N, C, H, W)")
        nhwc = x.shape[1] > 1 and x.is_contiguous(memory_format=torch.channels_last) and not x.is_contiguous()
        fmt = torch.channels_last if nhwc else torch.contiguous_format
        return torch.empty(x.shape, dtype=x.dtype, device=x.device, memory_format=fmt)

    def _check_to_channels_last(x, dtype):
        torch._check(x.dim() == 4 and x.dtype == torch.float32, lambda: "to_channels_last: x must be float32 NCHW")
        torch._check(dtype in (torch.float32, torch.bfloat16, torch.float16),
                     lambda: f"to_channels_last: dtype must be float32, bfloat16 or float16, got {dtype}")

    @torch.library.register_fake("squeezetime::to_channels_last")
    def _to_channels_last_fake(x, dtype):
        _check_to_channels_last(x, dtype)
        return torch.empty(x.shape, dtype=dtype, device=x.device, memory_format=torch.channels_last)

    @torch.library.register_fake("squeezetime::to_channels_last.out")
    def _to_channels_last_out_fake(x, *, out):
        _check_to_channels_last(x, out.dtype)
        torch._check(out.shape == x.shape and out.is_contiguous(memory_format=torch.channels_last),
                     lambda: "to_channels_last.out: out must be channels-last with x's shape")
        return out  # written in place: the schema's Tensor(a!) return is ``out`` itself
