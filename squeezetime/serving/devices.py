"""Where a served model runs, as its server says (Triton's instance kind and device id, TorchServe's ``gpu_id``),
and the CUDA-graph warm-up that the server's batch sizes need.

On CUDA the ``optimized`` backend pads every batch to a bucket of ``squeezetime.optimize.cuda_graphs`` (1, 2, 4,
..., 256) and replays one captured graph per bucket; a server whose largest batch is ``max_batch`` can meet the
buckets up to it, and captures them at load so that no request pays for a capture.
"""
from __future__ import annotations

import os

from ..errors import InputError

GPU_KINDS = ("GPU", "KIND_GPU")  # Triton's python backend names the kind "GPU"; the config spells it KIND_GPU


def graph_buckets(max_batch: int) -> tuple[int, ...]:
    """The CUDA-graph batch buckets that batches of 1..``max_batch`` clips are padded to."""
    from ..optimize.cuda_graphs import buckets_up_to  # imports torch: only when GPU sizes are asked for

    return tuple(buckets_up_to(int(max_batch)))


def check_bucket(max_batch: int, what: str) -> None:
    """A GPU server's largest batch must be a bucket: any other size is padded to the next one anyway."""
    from ..optimize.cuda_graphs import BATCH_BUCKETS

    if int(max_batch) not in BATCH_BUCKETS:
        larger = [b for b in BATCH_BUCKETS if b > int(max_batch)]
        hint = f" (a batch of {max_batch} runs as {larger[0]})" if larger else ""
        raise InputError(f"on a GPU, {what} must be a CUDA graph bucket, one of {list(BATCH_BUCKETS)}, "
                         f"got {max_batch}{hint}")


def triton_device(kind: str | None, device_id) -> str:
    """``cuda:<id>`` for a KIND_GPU instance (python backend ``args["model_instance_kind"]`` and
    ``["model_instance_device_id"]``), ``cpu`` for any other kind."""
    if str(kind or "").upper() in GPU_KINDS:
        return f"cuda:{int(device_id or 0)}"
    return "cpu"


def require_cuda(device: str, placed_by: str) -> None:
    """Refuse, with the reason, a CUDA device that torch cannot use here (a CPU-only torch, no driver, an index
    beyond the GPUs torch sees)."""
    import torch

    from ..backends import BackendError

    index = torch.device(device).index or 0
    if not torch.cuda.is_available():
        raise BackendError(f"{placed_by} put this model on {device}, but torch {torch.__version__} sees no CUDA GPU "
                           f"(CUDA build: {torch.version.cuda or 'none'}); install a CUDA build of torch where a GPU "
                           f"and its driver are visible, or serve on the CPU")
    if index >= torch.cuda.device_count():
        raise BackendError(f"{placed_by} put this model on {device}, but torch sees {torch.cuda.device_count()} "
                           f"GPU(s) (CUDA_VISIBLE_DEVICES={os.environ.get('CUDA_VISIBLE_DEVICES')!r})")


def warm_up_graphs(classifier, max_batch: int) -> tuple[int, ...]:
    """Capture the graphs of every bucket a batch of up to ``max_batch`` clips lands in, before the server reports
    ready. Returns the bucket sizes warmed; () for a backend without graphs (CPU backends have no ``warmup``)."""
    warmup = getattr(classifier.backend, "warmup", None)
    if warmup is None:
        return ()
    sizes = graph_buckets(max_batch)
    warmup(sizes)
    return sizes


__all__ = ["GPU_KINDS", "check_bucket", "graph_buckets", "require_cuda", "triton_device", "warm_up_graphs"]
