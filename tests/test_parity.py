"""One video, every path, the same numbers: ``squeezetime.predict``, ``Classifier.classify``, the CLI (``--json``),
a real tritonserver (``squeezetime_video`` over gRPC) and a real TorchServe (REST), all on the default backend,
for the 1x1 and 10x3 views: identical top-k labels, probabilities within 1e-5."""
from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

import squeezetime

pytestmark = pytest.mark.timeout(900)
ATOL = 1e-5
TOPK = 5


def cli_predictions(paths: list[str], views: str) -> dict[str, list[tuple[str, float]]]:
    out = subprocess.run([sys.executable, "-m", "squeezetime.cli", "predict", *paths, "--demo", "--json",
                          "--views", views, "--topk", str(TOPK)], capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr
    lines = [json.loads(line) for line in out.stdout.splitlines()]
    return {d["video"]: [(p["label"], p["probability"]) for p in d["labels"]] for d in lines}


@pytest.mark.parametrize("views", ["1x1", "10x3"])
def test_every_path_gives_the_same_numbers(views, demo_videos, triton, torchserve):
    from squeezetime.serving.torchserve.client import RestClient
    from squeezetime.triton import TritonClient

    paths = [path for path, _ in demo_videos[::5]]  # mp4, avi, webm, mkv among them
    classifier = squeezetime.load(squeezetime.DEMO)
    assert classifier.backend.name == "optimized"
    rest = RestClient(torchserve.inference_url)
    cli = cli_predictions(paths, views)
    with TritonClient(triton.grpc_url, timeout=300) as grpc:
        for path in paths:
            reference = classifier.classify(path, views=views, topk=TOPK)
            paths_results = {
                "predict": squeezetime.predict(squeezetime.demo_model(), path, views=views, topk=TOPK),
                "cli": cli[path],
                "triton": grpc.classify(path, views=views, topk=TOPK),
                "torchserve": [(p["label"], p["probability"]) for p in rest.predict(path, views=views, topk=TOPK)],
            }
            for name, got in paths_results.items():
                assert [label for label, _ in got] == [label for label, _ in reference], (name, path)
                np.testing.assert_allclose([p for _, p in got], [p for _, p in reference], atol=ATOL,
                                           err_msg=f"{name} {path} {views}")
