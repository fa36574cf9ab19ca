"""The backend interface (``Backend``, ``BackendError``) and the implementations for torch modules: the eager
network or optimised module (``TorchBackend``) and, on a GPU, its CUDA graphs per batch bucket
(``CudaGraphBackend``)."""
from __future__ import annotations

from typing import Protocol

import torch
from torch import Tensor

from .. import ops
from ..errors import SqueezeTimeError
from ..optimize import OptimizedSqueezeTime
from ..optimize.cuda_graphs import BATCH_BUCKETS, BucketRunner
from ..preprocess import as_uint8_clips, normalize_clip


class BackendError(SqueezeTimeError, RuntimeError):
    """A backend cannot run here (missing extension or device) or failed to build."""


class Backend(Protocol):
    name: str
    device: torch.device
    dtype: torch.dtype  # compute precision

    def logits(self, clips: Tensor) -> Tensor:
        """uint8 clips (N, T, H, W, 3), CPU -> float32 logits (N, classes), CPU."""


class TorchBackend:
    """A torch module that takes normalised clips (N, 3, T, H, W) of ``input_dtype`` and returns logits."""

    def __init__(self, name: str, module: torch.nn.Module, device: torch.device, dtype: torch.dtype,
                 input_dtype: torch.dtype, data_config):
        self.name, self.module, self.device, self.dtype = name, module, device, dtype
        self.input_dtype = input_dtype
        self.mean, self.std = data_config.mean, data_config.std

    @torch.inference_mode()
    def logits(self, clips: Tensor) -> Tensor:
        clips = clips.to(self.device)
        if isinstance(self.module, OptimizedSqueezeTime):  # not a torch.compile wrapper: that traces forward
            # uint8 frames straight into the network's input layout (one pass on CPU); checked as normalize_clip
            # checks them, so a bad shape or dtype gets the same error on every path
            clips = as_uint8_clips(clips, num_frames=None)
            return self.module.forward_frames(clips, self.mean, self.std).float().cpu()
        x = normalize_clip(clips, self.mean, self.std)  # the squeeze_time operator
        return self.module(x.to(self.input_dtype)).float().cpu()

    def __repr__(self) -> str:
        return f"TorchBackend({self.name}, {self.device}, {str(self.dtype).replace('torch.', '')})"


class CudaGraphBackend:
    """``optimized`` on a GPU: uint8 clips -> the optimised network (float16 by default, channels-last, folded
    batch norms, CUDA kernels) replayed as one CUDA graph per batch bucket (``optimize.cuda_graphs``). The clips
    go from pinned host memory to the device on a side stream and ``squeeze_time.out`` writes them into the
    graph's static channels-last input."""

    name = "optimized"

    def __init__(self, module: OptimizedSqueezeTime, device: torch.device, dtype: torch.dtype, data_config, *,
                 max_bucket: int = BATCH_BUCKETS[-1]):
        self.module, self.device, self.dtype = module, device, dtype
        self.data_config = data_config
        mean, std = [float(m) for m in data_config.mean], [float(s) for s in data_config.std]

        def write_input(frames: Tensor, out: Tensor) -> None:
            if out.device.type == "cpu" or ops.has_cuda_kernel("squeeze_time.out"):
                torch.ops.squeezetime.squeeze_time.out(frames, mean, std, out=out)
            else:  # no CUDA kernels built: the reference, then a layout-and-dtype copy
                out.copy_(ops.squeeze_time_reference(frames, mean, std))

        self.runner = BucketRunner(module.forward_input, write_input, device, dtype, channels=3,
                                   max_bucket=max_bucket)

    def logits(self, clips: Tensor) -> Tensor:
        # checked as normalize_clip checks them: a bad shape or dtype gets the same error on every path
        return self.runner.logits(as_uint8_clips(clips, num_frames=None))

    def submit(self, clips: Tensor):
        """Start a batch and return at once (``.result()`` waits): the next batch's copy overlaps this one."""
        return self.runner.submit(as_uint8_clips(clips, num_frames=None))

    def warmup(self, batch_sizes, clip_shape=None) -> list[int]:
        """Capture the CUDA graphs of the buckets these batch sizes use (default clip: the data config's
        frames at its 1x1 crop)."""
        return self.runner.warmup(batch_sizes, clip_shape or self.default_clip_shape())

    def default_clip_shape(self) -> tuple[int, int, int]:
        crop = self.data_config.crop_size
        return (self.data_config.num_frames, crop, crop)

    def __repr__(self) -> str:
        return f"CudaGraphBackend({self.device}, {str(self.dtype).replace('torch.', '')}, buckets up to {self.runner.max_bucket})"
