"""The batch buckets of the GPU path (squeezetime.optimize.cuda_graphs), tested on the CPU: the same runner with
its CUDA graph capture replaced by an eager replay of the bucket's static buffers, so that bucketing, padding,
splitting, lazy capture, warm-up, the memory bound and the clip-shape cache are checked here. The CUDA graphs
themselves are checked on a GPU by tests/test_optimize_cuda.py (`make gpu-check`)."""
import threading

import pytest
import torch

import squeezetime
from squeezetime import ops
from squeezetime.optimize.cuda_graphs import BATCH_BUCKETS, BucketRunner, bucket_for, buckets_up_to, chunks

FRAMES, SIZE = 4, 32


def test_buckets_round_up_and_large_batches_split():
    assert [bucket_for(n) for n in (1, 2, 3, 5, 64, 65, 256)] == [1, 2, 4, 8, 64, 128, 256]
    assert bucket_for(300) == 256 and bucket_for(20, max_bucket=16) == 16
    assert buckets_up_to(8) == (1, 2, 4, 8) and buckets_up_to(48) == (1, 2, 4, 8, 16, 32, 64)
    assert buckets_up_to(1000) == BATCH_BUCKETS
    assert chunks(600, 256) == [(0, 256), (256, 512), (512, 600)] and chunks(3, 8) == [(0, 3)]
    with pytest.raises(ValueError):
        bucket_for(0)


@pytest.fixture(scope="module")
def tiny_optimized():
    with torch.random.fork_rng():
        torch.manual_seed(0)
        model = squeezetime.create_model("k400", widen_factor=0.0625, num_classes=5, num_frames=FRAMES).eval()
    return squeezetime.optimize(model)


def write_input(frames, out):
    out.copy_(ops.squeeze_time(frames).contiguous(memory_format=torch.channels_last))


def runner_for(module, **kwargs):
    return BucketRunner(module.forward_input, write_input, torch.device("cpu"), torch.float32, channels=3, **kwargs)


def clips(n, seed=0, size=SIZE):
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (n, FRAMES, size, size, 3), dtype=torch.uint8, generator=g)


def expected_logits(module, x):
    with torch.inference_mode():
        return module.forward_frames(x)


@pytest.mark.parametrize("n", [1, 3, 8, 9, 21])
def test_padded_and_split_batches_give_each_clips_own_logits(tiny_optimized, n):
    runner = runner_for(tiny_optimized, max_bucket=8)
    runner.logits(clips(8, seed=99))  # fills the static input with other clips: rows past n are stale padding
    x = clips(n, seed=n)
    got = runner.logits(x)
    assert got.shape == (n, 5) and got.dtype == torch.float32
    torch.testing.assert_close(got, expected_logits(tiny_optimized, x), rtol=1e-5, atol=1e-5)


def test_graphs_are_captured_lazily_once_per_bucket(tiny_optimized):
    runner = runner_for(tiny_optimized)
    runner.logits(clips(3))
    assert runner.captured((FRAMES, SIZE, SIZE)) == [4] and runner.captures == 1
    runner.logits(clips(4))
    runner.logits(clips(1))
    assert runner.captured((FRAMES, SIZE, SIZE)) == [1, 4] and runner.captures == 2


def test_warmup_captures_the_buckets_a_server_needs(tiny_optimized):
    runner = runner_for(tiny_optimized, max_bucket=16)
    assert runner.warmup(buckets_up_to(12), (FRAMES, SIZE, SIZE)) == [1, 2, 4, 8, 16]
    assert runner.captured((FRAMES, SIZE, SIZE)) == [1, 2, 4, 8, 16]
    runner.logits(clips(11))
    assert runner.captures == 5  # nothing new captured while serving


def test_a_bucket_without_memory_for_a_capture_runs_eagerly(tiny_optimized, caplog):
    per_clip = 3 * FRAMES * SIZE * SIZE * 4  # bytes of one clip's float32 input: the CPU stand-in of a run's need
    runner = runner_for(tiny_optimized, free_memory=lambda: int(2 * per_clip * 1.3))
    x = clips(4)
    got = runner.logits(x)
    assert runner.captured((FRAMES, SIZE, SIZE)) == []
    assert "bucket 4 is not captured" in caplog.text
    torch.testing.assert_close(got, expected_logits(tiny_optimized, x), rtol=1e-5, atol=1e-5)
    runner.logits(clips(2))
    assert runner.captured((FRAMES, SIZE, SIZE)) == [2]


def test_a_new_clip_shape_replaces_the_oldest_ones_graphs(tiny_optimized):
    runner = runner_for(tiny_optimized, max_shapes=2)
    for size in (32, 40, 48):
        runner.logits(clips(2, size=size))
    assert runner.captured((FRAMES, 32, 32)) == []
    assert runner.captured((FRAMES, 40, 40)) == [2] and runner.captured((FRAMES, 48, 48)) == [2]
    x = clips(2, size=32)
    torch.testing.assert_close(runner.logits(x), expected_logits(tiny_optimized, x), rtol=1e-5, atol=1e-5)


def test_threads_sharing_a_runner_each_get_their_own_logits(tiny_optimized):
    runner = runner_for(tiny_optimized, max_bucket=4)
    inputs = {i: clips(1 + i % 4, seed=i) for i in range(8)}
    results, start = {}, threading.Barrier(4)

    def work(ids):
        start.wait()
        for i in ids:
            results[i] = runner.logits(inputs[i])

    threads = [threading.Thread(target=work, args=(range(k, 8, 4),)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for i, x in inputs.items():
        torch.testing.assert_close(results[i], expected_logits(tiny_optimized, x), rtol=1e-5, atol=1e-5)


def test_submit_returns_pending_work_and_result_collects_it(tiny_optimized):
    runner = runner_for(tiny_optimized, max_bucket=2)
    first, second = clips(3, seed=1), clips(2, seed=2)
    pending = [runner.submit(first), runner.submit(second)]
    torch.testing.assert_close(pending[0].result(), expected_logits(tiny_optimized, first), rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(pending[1].result(), expected_logits(tiny_optimized, second), rtol=1e-5, atol=1e-5)


def test_max_bucket_must_be_a_bucket(tiny_optimized):
    with pytest.raises(ValueError, match="max_bucket"):
        runner_for(tiny_optimized, max_bucket=100)


def test_cuda_defaults_to_float16_for_the_optimized_path():
    from squeezetime.backends import default_dtype

    cuda, cpu = torch.device("cuda"), torch.device("cpu")
    assert default_dtype("optimized", cuda) == torch.float16 and default_dtype("auto", cuda) == torch.float16
    assert default_dtype("eager", cuda) == torch.float32 and default_dtype("optimized", cpu) == torch.float32


def test_the_classifier_pipelines_batches_through_a_submitting_backend(tiny_optimized):
    """CudaGraphBackend (here on the CPU: the same class, its runner's eager stand-in for graphs) behind the one
    Classifier: batches queued ahead are collected in order, each clip with its own logits."""
    from squeezetime.backends.base import CudaGraphBackend, TorchBackend
    from squeezetime.classifier import Classifier

    from squeezetime.video.views import View

    config = squeezetime.DataConfig(num_frames=FRAMES, views={"1x1": View(1, SIZE, SIZE, False)}, default_views="1x1")
    graphs = CudaGraphBackend(tiny_optimized, torch.device("cpu"), torch.float32, config, max_bucket=4)
    plain = TorchBackend("optimized", tiny_optimized, torch.device("cpu"), torch.float32, torch.float32, config)
    names = [str(i) for i in range(5)]
    x = clips(10, seed=3)
    got = Classifier(graphs, config, names, batch_size=3).infer(x).logits
    want = Classifier(plain, config, names, batch_size=3).infer(x).logits
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)
    assert graphs.runner.captured((FRAMES, SIZE, SIZE)) == [1, 4]  # batches of 3 (bucket 4) and the last clip


def test_pipelined_keeps_order_and_bounds_what_is_in_flight():
    from squeezetime.classifier import _pipelined

    in_flight, peak = [], []

    class Job:
        def __init__(self, value):
            self.value = value
            in_flight.append(self)
            peak.append(len(in_flight))

        def result(self):
            in_flight.remove(self)
            return self.value

    assert list(_pipelined(Job, range(7), in_flight=2)) == list(range(7))
    assert max(peak) == 3  # two queued ahead of the one being collected


def test_a_fused_cudnn_convolution_that_cudnn_declines_runs_unfused_from_then_on(monkeypatch):
    """cuDNN refusing a fused conv+bias+ReLU (a RuntimeError at the call) costs one warning, and that convolution
    and shape run the ATen maths from then on. Here torch's fused operators are replaced by ones that refuse, and
    the guard is told the tensors are on a GPU: the guard is the code under test."""
    import torch.nn.functional as F

    from squeezetime.optimize import cudnn

    calls = []

    def refuse(*args):
        calls.append(args)
        raise RuntimeError("CUDNN_STATUS_NOT_SUPPORTED")

    monkeypatch.setattr(cudnn, "enabled", lambda x: True)
    monkeypatch.setattr(torch, "cudnn_convolution_relu", refuse)
    monkeypatch.setattr(torch, "cudnn_convolution_add_relu", refuse)
    monkeypatch.setattr(cudnn, "_warned", [])
    monkeypatch.setattr(cudnn, "_declined", set())
    g = torch.Generator().manual_seed(0)
    x, w, b, other = torch.randn(2, 4, 6, 6, generator=g), torch.randn(5, 4, 3, 3, generator=g), \
        torch.randn(5, generator=g), torch.randn(2, 5, 6, 6, generator=g)
    with pytest.warns(UserWarning, match="cuDNN declined a fused convolution"):
        first = cudnn.conv_relu(x, w, b, (1, 1), (1, 1), 1)
    assert torch.equal(first, F.relu(F.conv2d(x, w, b, 1, 1)))
    assert torch.equal(cudnn.conv_relu(x, w, b, (1, 1), (1, 1), 1), first) and len(calls) == 1
    added = cudnn.conv_add_relu(x, w, b, other, (1, 1), (1, 1), 1)
    assert torch.equal(added, F.relu(F.conv2d(x, w, b, 1, 1) + other)) and len(calls) == 2
