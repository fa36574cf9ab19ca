"""The demo through a real Triton: the demo model's repository in a temp dir, tritonserver on it, videos
classified over gRPC by ``squeezetime_video`` (``squeezetime demo --via triton``)."""
from __future__ import annotations

import importlib.util
import tempfile
from concurrent.futures import ThreadPoolExecutor
from typing import Callable

from ...synthetic.demo import demo_model
from .client import TritonClient
from .install import TritonServerError, find_tritonserver
from .leftovers import DEMO_REPO_PREFIX
from .repository import write_repository
from .server import TritonServer


def serving_available() -> bool:
    """True when the serving extra is there: tritonclient importable and a tritonserver found."""
    if importlib.util.find_spec("tritonclient") is None:
        return False
    try:
        find_tritonserver()
        return True
    except TritonServerError:
        return False


def classify_via_triton(videos: list[tuple[str, str]], concurrency: int = 8,
                        progress: Callable[[str], None] = lambda message: None) -> list[tuple[str, str, str, float]]:
    """Build the demo repository, start tritonserver, classify ``videos`` ([(path, truth)]) over gRPC
    (``concurrency`` requests in flight), stop the server. Returns [(path, truth, label, probability)];
    ``progress`` hears each step."""
    with tempfile.TemporaryDirectory(prefix=DEMO_REPO_PREFIX) as tmp:
        repo = write_repository(tmp, demo_model())
        progress("demo: starting tritonserver ...")
        with TritonServer(repo) as server:
            progress(f"demo: Triton ready at gRPC {server.grpc_url}; classifying {len(videos)} videos through "
                     "squeezetime_video")
            with TritonClient(server.grpc_url, timeout=300) as client, ThreadPoolExecutor(concurrency) as pool:
                tops = list(pool.map(lambda item: client.classify(item[0], topk=1)[0], videos))
                batches = client.batch_sizes()
            progress(f"demo: clip-model executions by batch size: {dict(sorted(batches.items()))}")
        progress("demo: tritonserver stopped")
    return [(path, truth, label, prob) for (path, truth), (label, prob) in zip(videos, tops)]


__all__ = ["classify_via_triton", "serving_available"]
