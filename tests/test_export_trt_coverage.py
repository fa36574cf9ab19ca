"""Torch-TensorRT converter coverage of the serving graph -- a PROXY, not an engine build.

The TensorRT libraries cannot be installed on this project's machines (../shared/PLATFORM.md), so the real
Torch-TensorRT cannot even be imported. In a separate venv (.venv-trt: torch 2.14.1 + torch-tensorrt-rtx,
which ships the same `torch_tensorrt` module on TensorRT-RTX libraries that do install), with the CUDA
device queries answered by stand-ins, scripts/trt_coverage.py exports the graph with torch 2.14 and runs
`torch_tensorrt.dynamo.compile(..., dryrun=True)`: lowering and partitioning as in a real compile, stopping
before the engine build. What it proves: every operator of the graph has a Torch-TensorRT converter and
the whole graph (uint8 CLIP in, LOGITS/PROBS out) is one TensorRT block. What it does not prove: that
TensorRT builds the engine, its speed, or its numbers (tests/test_export_gpu.py, on a GPU with TensorRT).
"""
import json
import os
import subprocess

import pytest

from support.export import ROOT, TRT_VENV, subprocess_env, trt_python

pytestmark = pytest.mark.slow  # a Torch-TensorRT dry run in its own venv


@pytest.fixture(scope="module")
def coverage(tmp_path_factory):
    if not trt_python().exists():
        message = f"{TRT_VENV} is missing: run `make export-setup` (torch 2.14.1 + torch-tensorrt-rtx)"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    out = tmp_path_factory.mktemp("coverage") / "coverage.json"
    proc = subprocess.run([str(trt_python()), str(ROOT / "scripts" / "trt_coverage.py"), "--precision", "fp32",
                           "fp16", "--batch", "1:8:64", "--json", str(out)],
                          cwd=ROOT, env=subprocess_env({"SQUEEZETIME_DISABLE_EXT": "1"}),  # _C is built for .venv's torch
                          capture_output=True, text=True, timeout=900)
    assert out.exists(), f"coverage script failed ({proc.returncode}):\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    return proc.returncode, json.loads(out.read_text())


def test_proxy_ran_real_torch_tensorrt_dry_run(coverage):
    _, result = coverage
    assert result["proxy"].startswith("torch-tensorrt-rtx dry run")
    assert result["torch_tensorrt"].startswith("2.14") and result["torch"].startswith("2.14")
    assert [r["precision"] for r in result["runs"]] == ["fp32", "fp16"]


@pytest.mark.parametrize("index,precision", [(0, "fp32"), (1, "fp16")])
def test_every_operator_converts_in_one_tensorrt_block(coverage, index, precision):
    returncode, result = coverage
    run = result["runs"][index]
    assert run["precision"] == precision
    assert run["total_ops"] > 300  # the whole ResNet-50 graph, not a fragment
    assert run["supported_ops"] == run["total_ops"] and run["coverage_percent"] == 100.0, run["unsupported_ops"]
    assert run["unsupported_ops"] == {} and run["nodes_run_in_torch"] == []
    assert run["tensorrt_blocks"] == 1 and run["ops_per_block"] == [run["total_ops"]]
    assert run["input_dtypes"] == ["torch.uint8"]  # the engine takes the Triton CLIP as is
    assert run["output_dtypes"] == ["torch.float32", "torch.float32"]
    assert run["engine_batch_range"]["min"] == 1 and run["engine_batch_range"]["max"] == 64
    assert returncode == 0 and result["all_supported"]
