"""CUDA graphs per batch bucket: the optimised network on a GPU without its launch cost.

Eager inference on a data-centre GPU is bound by kernel launches up to batch 64 (H200, full k400 network:
20 ms at batch 1 for a few hundred kernels that compute for far less). A CUDA graph replays a whole forward
pass as one launch. A graph has fixed shapes and addresses, so batches are rounded up to a *bucket*
(``BATCH_BUCKETS``), padded, and each bucket's graph is captured the first time it is needed (or by
``warmup``). Larger batches run as several calls of the largest bucket.

Memory: every bucket's graph of one clip shape shares one memory pool (they never run at once: one compute
stream, one lock), so the buckets together take about what the largest one takes, plus the static input.
Graphs are captured only for buckets up to ``max_bucket``, and one is captured only when the device has the
memory its eager run measured free (else that bucket runs eagerly, with one warning). A new clip shape
replaces the oldest one's graphs once ``max_shapes`` shapes are held.

A call: uint8 clips in pinned host memory are copied to the device on a side stream (``submit`` returns
before the work ends, so the next batch's copy overlaps this batch's compute), then, on the compute stream,
``squeeze_time.out`` writes them into the graph's static channels-last input, the graph is replayed and the
logits are copied back to pinned host memory.
"""
from __future__ import annotations

import logging
import threading
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Callable, Sequence

import torch
from torch import Tensor

logger = logging.getLogger("squeezetime")

BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256)
MEMORY_MARGIN = 1.25  # a capture needs its measured eager peak free, and this much more


def bucket_for(n: int, max_bucket: int = BATCH_BUCKETS[-1]) -> int:
    """The smallest bucket that holds ``n`` clips (``max_bucket`` for more: they are split)."""
    if n < 1:
        raise ValueError(f"a batch has at least one clip, got {n}")
    return next((b for b in BATCH_BUCKETS if b >= n and b <= max_bucket), max_bucket)


def buckets_up_to(max_batch: int) -> tuple[int, ...]:
    """The buckets a server whose batches hold at most ``max_batch`` clips uses: those below it, and the one
    that holds it (Triton's preferred batch sizes and the graphs its warm-up captures)."""
    if max_batch < 1:
        raise ValueError(f"max_batch must be >= 1, got {max_batch}")
    top = bucket_for(min(max_batch, BATCH_BUCKETS[-1]))
    return tuple(b for b in BATCH_BUCKETS if b <= top)


def chunks(n: int, max_bucket: int) -> list[tuple[int, int]]:
    """(start, stop) of the calls that cover ``n`` clips: full ``max_bucket`` calls, then the rest."""
    return [(start, min(start + max_bucket, n)) for start in range(0, n, max_bucket)]


@dataclass
class Pending:
    """Logits on their way back to the host: ``result()`` waits for them (the GIL is released meanwhile)."""
    parts: list  # float32 host tensors, one per call of the network, in order
    done: object = None  # torch.cuda.Event after the last copy, or None when the work already ended (CPU)

    def result(self) -> Tensor:
        if self.done is not None:
            self.done.synchronize()
        return self.parts[0] if len(self.parts) == 1 else torch.cat(self.parts)


@dataclass
class _Shape:
    """The graphs of one clip shape (T, H, W): their static input, shared memory pool and static outputs."""
    static_input: Tensor
    pool: object = None
    graphs: dict = field(default_factory=dict)  # bucket -> (replay callable, static logits)
    eager_buckets: set = field(default_factory=set)  # buckets with too little memory to capture


class BucketRunner:
    """Runs ``network`` (normalised channels-last input (B, 3T, H, W) -> logits) on uint8 clips (N, T, H, W, 3)
    one bucket at a time, through CUDA graphs on a GPU.

    ``write_input(frames, out)``: frames (n, T, H, W, 3) uint8 on the device -> the first n rows of ``out``
    (the squeeze_time.out operator). On a CPU device (unit tests, and nothing else) "capture" keeps the
    bucket's static buffers and runs the network eagerly: the same padding, bucketing and bookkeeping.
    """

    def __init__(self, network: Callable[[Tensor], Tensor], write_input: Callable[[Tensor, Tensor], None],
                 device: torch.device, dtype: torch.dtype, channels: int, *, max_bucket: int = BATCH_BUCKETS[-1],
                 max_shapes: int = 2, free_memory: Callable[[], int] | None = None):
        if max_bucket not in BATCH_BUCKETS:
            raise ValueError(f"max_bucket must be one of {BATCH_BUCKETS}, got {max_bucket}")
        self.network, self.write_input = network, write_input
        self.device, self.dtype, self.channels = torch.device(device), dtype, channels
        self.max_bucket, self.max_shapes = max_bucket, max_shapes
        self.cuda = self.device.type == "cuda"
        self._free_memory = free_memory or self._device_free_memory
        self._shapes: OrderedDict[tuple, _Shape] = OrderedDict()
        self._lock = threading.Lock()  # one replay at a time: the graphs share their pool and static buffers
        self.captures = 0  # graphs captured so far (tests, logs)
        if self.cuda:
            self.compute_stream = torch.cuda.Stream(self.device)
            self.copy_stream = torch.cuda.Stream(self.device)

    # -- public -------------------------------------------------------------------------------------------
    def logits(self, clips: Tensor) -> Tensor:
        """uint8 clips (N, T, H, W, 3) on the host or the device -> float32 logits (N, classes) on the host."""
        return self.submit(clips).result()

    @torch.inference_mode()
    def submit(self, clips: Tensor) -> Pending:
        """Start the work for ``clips`` and return at once; ``result()`` of the returned object waits for it."""
        host = self._pinned(clips) if self.cuda and clips.device.type == "cpu" else clips
        with self._lock:
            frames = self._to_device(host)
            # each call's logits leave the bucket's static output before the next replay overwrites it
            parts = [self._to_host(self._run_chunk(frames[a:b])) for a, b in chunks(frames.shape[0], self.max_bucket)]
            return Pending(parts, self._record_done())

    @torch.inference_mode()
    def warmup(self, batch_sizes: Sequence[int], clip_shape: Sequence[int]) -> list[int]:
        """Capture the graphs that batches of these sizes use, for clips (T, H, W) (a server calls this before
        it reports ready). Returns the buckets captured or found."""
        buckets = sorted({bucket_for(min(b, self.max_bucket), self.max_bucket) for b in batch_sizes})
        with self._lock:
            shape = self._shape_entry(tuple(clip_shape))
            for b in buckets:
                self._graph(shape, b)
        if self.cuda:
            torch.cuda.synchronize(self.device)
        return buckets

    @torch.inference_mode()
    def replay(self, clip_shape: Sequence[int], bucket: int) -> Tensor:
        """Replay a captured bucket on what its static input holds, the logits left on the device (the network
        alone, for benchmarks); the current stream waits for it."""
        with self._lock:
            replay, _ = self._shapes[tuple(clip_shape)].graphs[bucket]
            with self._on_compute_stream():
                logits = replay()
        if self.cuda:
            torch.cuda.current_stream(self.device).wait_stream(self.compute_stream)
        return logits

    def captured(self, clip_shape: Sequence[int]) -> list[int]:
        entry = self._shapes.get(tuple(clip_shape))
        return sorted(entry.graphs) if entry else []

    def clear(self) -> None:
        """Drop every graph and its memory."""
        with self._lock:
            self._shapes.clear()
        if self.cuda:
            torch.cuda.empty_cache()

    # -- one call ---------------------------------------------------------------------------------------
    def _pinned(self, clips: Tensor) -> Tensor:
        if clips.is_pinned():
            return clips
        staged = torch.empty(clips.shape, dtype=clips.dtype, pin_memory=True)  # torch's caching host allocator
        return staged.copy_(clips)

    def _to_device(self, host: Tensor) -> Tensor:
        """The clips on the device: copied on the side stream; the compute stream waits for that copy only."""
        if host.device == self.device:
            return host
        if not self.cuda:
            return host.to(self.device)
        with torch.cuda.stream(self.copy_stream):
            frames = host.to(self.device, non_blocking=True)
        self.compute_stream.wait_stream(self.copy_stream)
        frames.record_stream(self.compute_stream)  # freed after the compute stream has read it
        return frames

    def _run_chunk(self, frames: Tensor) -> Tensor:
        """logits of at most max_bucket clips on the device (a view of the bucket's static output)."""
        n = frames.shape[0]
        shape = self._shape_entry(tuple(frames.shape[1:4]))
        bucket = bucket_for(n, self.max_bucket)
        with self._on_compute_stream():
            replay = self._graph(shape, bucket)
            self.write_input(frames, shape.static_input[:n])  # rows n..bucket keep old clips: padding
            return replay()[:n]

    def _to_host(self, logits: Tensor) -> Tensor:
        """A float32 host copy of logits (on a GPU: queued on the compute stream into pinned memory)."""
        if not self.cuda:
            return logits.float().clone()
        with self._on_compute_stream():
            out = torch.empty(logits.shape, dtype=torch.float32, pin_memory=True)
            return out.copy_(logits, non_blocking=True)

    def _record_done(self):
        if not self.cuda:
            return None
        done = torch.cuda.Event()
        done.record(self.compute_stream)
        return done

    def _on_compute_stream(self):
        return torch.cuda.stream(self.compute_stream) if self.cuda else _NoStream()

    # -- graphs -----------------------------------------------------------------------------------------
    def _shape_entry(self, clip_shape: tuple) -> _Shape:
        entry = self._shapes.get(clip_shape)
        if entry is None:
            while len(self._shapes) >= self.max_shapes:
                if self.cuda:  # copies out of the old graphs' outputs may still be queued
                    self.compute_stream.synchronize()
                self._shapes.popitem(last=False)  # the least recently used shape's graphs go
                if self.cuda:
                    torch.cuda.empty_cache()
            t, h, w = clip_shape
            static = torch.empty((self.max_bucket, self.channels * t, h, w), dtype=self.dtype, device=self.device,
                                 memory_format=torch.channels_last).zero_()
            pool = torch.cuda.graph_pool_handle() if self.cuda else None
            entry = self._shapes[clip_shape] = _Shape(static, pool)
        self._shapes.move_to_end(clip_shape)
        return entry

    def _graph(self, shape: _Shape, bucket: int) -> Callable[[], Tensor]:
        """The bucket's replay, captured now if it is new; an eager run where the memory for a capture is not
        free."""
        found = shape.graphs.get(bucket)
        if found is not None:
            return found[0]
        x = shape.static_input[:bucket]
        if bucket not in shape.eager_buckets:
            need, free = self._warm_and_measure(x), self._free_memory()
            if free >= need * MEMORY_MARGIN:
                replay, logits = self._record(shape, x)
                shape.graphs[bucket] = (replay, logits)
                self.captures += 1
                return replay
            logger.warning("squeezetime: batch bucket %d is not captured as a CUDA graph (needs ~%d MiB, %d MiB "
                           "free); it runs eagerly", bucket, need >> 20, free >> 20)
            shape.eager_buckets.add(bucket)
        return _eager_replay(self.network, x)

    def _record(self, shape: _Shape, x: Tensor) -> tuple[Callable[[], Tensor], Tensor]:
        """Capture the network on the bucket's static input (on a CPU: its first run, replayed eagerly)."""
        if not self.cuda:
            return _eager_replay(self.network, x), self.network(x)
        graph = torch.cuda.CUDAGraph()
        # thread_local: other threads of the server may use the GPU (their own work) while this one captures
        with _cudnn_autotuned(), torch.cuda.graph(graph, pool=shape.pool, stream=self.compute_stream,
                                                  capture_error_mode="thread_local"):
            logits = self.network(x)  # cuDNN finds the algorithms the warm-up timed in its cache: no search here
        return _graph_replay(graph, logits), logits

    def _warm_and_measure(self, x: Tensor) -> int:
        """Bytes a run of the bucket takes. On a GPU: two eager runs on the compute stream first (cuDNN/cuBLAS
        choose and allocate their workspaces, the network fills its caches: none of that may happen during a
        capture), measured by the allocator's peak. On a CPU: the bucket's input bytes (a stand-in for tests)."""
        if not self.cuda:
            return x.numel() * x.element_size()
        torch.cuda.synchronize(self.device)
        before = torch.cuda.memory_allocated(self.device)
        torch.cuda.reset_peak_memory_stats(self.device)
        with _cudnn_autotuned(), torch.cuda.stream(self.compute_stream):
            for _ in range(2):
                self.network(x)
        torch.cuda.synchronize(self.device)
        return max(0, torch.cuda.max_memory_allocated(self.device) - before)

    def _device_free_memory(self) -> int:
        if not self.cuda:
            return 1 << 62
        free, _ = torch.cuda.mem_get_info(self.device)
        # the caching allocator's reserved-but-unused blocks are free for a capture too
        return free + torch.cuda.memory_reserved(self.device) - torch.cuda.memory_allocated(self.device)


def _cudnn_autotuned():
    """cuDNN times its convolution algorithms for each shape once (the first warm-up run) and the capture records
    the fastest; a replay never searches again. Scoped: the process's own setting is left as it was."""
    return torch.backends.cudnn.flags(enabled=True, benchmark=True, deterministic=False,
                                      allow_tf32=torch.backends.cudnn.allow_tf32)


class _NoStream:
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


def _graph_replay(graph, logits: Tensor) -> Callable[[], Tensor]:
    def replay() -> Tensor:
        graph.replay()
        return logits
    return replay


def _eager_replay(network, x: Tensor) -> Callable[[], Tensor]:
    return lambda: network(x)


__all__ = ["BATCH_BUCKETS", "BucketRunner", "Pending", "bucket_for", "buckets_up_to", "chunks"]
