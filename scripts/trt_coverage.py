#!/usr/bin/env python
"""Torch-TensorRT converter-coverage PROXY for the SqueezeTime serving graph (no GPU, no engine).

What it does: exports the serving graph (uint8 CLIP -> LOGITS, PROBS; BatchNorm folded) with a dynamic
batch, then runs ``torch_tensorrt.dynamo.compile(..., dryrun=True)`` over it. The dry run lowers and
partitions the graph exactly as a real compile would and reports which operators have a TensorRT
converter and how the graph would be split into TensorRT engines; it stops before building an engine.

Why a proxy: the TensorRT core libraries (`tensorrt-cu13-libs`) cannot be installed on this project's
machines, so the real Torch-TensorRT cannot even be imported here. `torch-tensorrt-rtx` provides the same
`torch_tensorrt` module (same converter registry, lowering passes and partitioner) on TensorRT-RTX
libraries that do install, and its dry run needs no GPU once the CUDA-device queries made at import time
are answered by stand-ins (below). It shows converter coverage; it does NOT show that an engine builds,
that it is fast, or that it is numerically right: RTX engines are not `tensorrt_plan` engines. That is the
job of scripts/gpu_check_trt.sh on a GPU machine with TensorRT.

Run in a venv with torch 2.14 + torch-tensorrt-rtx (`make .venv-trt`), repo on PYTHONPATH:
    PYTHONPATH=. .venv-trt/bin/python scripts/trt_coverage.py --precision fp32 fp16 --json build/trt_coverage.json
Prints one JSON object; exit status 0 only when every precision has 100 % coverage in one TensorRT block.
"""
from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import sys
import time
import types

FAKE_CAPABILITY = (9, 0)  # H100 (sm_90): what the stand-in CUDA device claims to be


def replace_cuda_device_queries(capability=FAKE_CAPABILITY) -> None:
    """Answer the CUDA-device queries that torch_tensorrt makes at import and compile time, without a driver.

    Only queries are replaced (capability, name, properties, free memory, current device, count); nothing that would
    allocate or run on a GPU. Must run before ``import torch_tensorrt``.
    """
    import torch

    props = types.SimpleNamespace(name="stand-in (no GPU: converter-coverage dry run)", major=capability[0],
                                  minor=capability[1], total_memory=80 * 2**30, multi_processor_count=132,
                                  is_integrated=False, uuid="00000000-0000-0000-0000-000000000000")
    cuda = torch.cuda
    cuda.get_device_capability = lambda device=None: capability
    cuda.get_device_properties = lambda device=None: props
    cuda.get_device_name = lambda device=None: props.name
    cuda.current_device = lambda: 0
    cuda.device_count = lambda: 1
    cuda.set_device = lambda device: None
    cuda.mem_get_info = lambda device=None: (props.total_memory, props.total_memory)
    cuda._lazy_init = lambda: None


def export_graph(precision: str, max_batch: int, arch: str, widen_factor: float, checkpoint: str | None):
    import squeezetime
    from squeezetime.export.exported_program import export_program

    if checkpoint:
        model = squeezetime.load_checkpoint(checkpoint)
    else:
        model = squeezetime.create_model(arch, widen_factor=widen_factor)
    return model, export_program(model, precision=precision, max_batch=max_batch)


def dry_run(program, model, precision: str, batch: tuple[int, int, int]) -> dict:
    import torch
    import torch_tensorrt
    from torch_tensorrt.dynamo import _compiler

    from squeezetime.export.tensorrt import trt_inputs

    captured = {}
    original = _compiler.dryrun_stats_display

    def capture(tracker, enabled):
        captured["tracker"] = tracker
        original(tracker, enabled)

    _compiler.dryrun_stats_display = capture
    printed = io.StringIO()
    started = time.time()
    try:
        with contextlib.redirect_stdout(printed):
            torch_tensorrt.dynamo.compile(program, arg_inputs=trt_inputs(torch_tensorrt, model, batch),
                                          dryrun=True, min_block_size=1, device=torch.device("cuda:0"))
    finally:
        _compiler.dryrun_stats_display = original
    tracker = captured.get("tracker")
    if tracker is None:
        raise RuntimeError("the dry run did not report (torch_tensorrt changed?)\n" + printed.getvalue()[-2000:])
    total, supported = tracker.total_ops_in_graph, tracker.supported_ops_in_graph
    profile = engine_batch_range(program, batch)
    return {
        "precision": precision,
        "total_ops": total,
        "supported_ops": supported,
        "coverage_percent": round(100.0 * supported / total, 2) if total else 0.0,
        "unsupported_ops": {str(k): v for k, v in tracker.unsupported_ops.items()},
        "nodes_run_in_torch": list(tracker.to_run_in_torch),
        "tensorrt_blocks": tracker.tensorrt_graph_count,
        "ops_per_block": [s.subgraph_op_count for s in tracker.per_subgraph_data],
        "engine_batch_range": profile,
        "input_dtypes": [str(d) for d in _flat(tracker.input_dtypes)],
        "output_dtypes": [str(d) for d in _flat(tracker.output_dtypes)],
        "seconds": round(time.time() - started, 1),
        "report_tail": printed.getvalue().strip().splitlines()[:4],
    }


def engine_batch_range(program, batch) -> dict | None:
    """The batch range Torch-TensorRT derives for the engine profile from the graph and the Input bounds.

    torch.export records the dynamic batch as [2, MAX] in its shape environment (0/1 specialisation) and
    Torch-TensorRT maps that back to 1 (``extract_var_range_info``); this reads what it would use.
    """
    try:
        from torch_tensorrt.dynamo.utils import extract_var_range_info
    except ImportError:
        return None
    user = [n for n in program.graph.nodes if n.op == "placeholder"
            and n.name in {s.arg.name for s in program.graph_signature.input_specs if s.kind.name == "USER_INPUT"}]
    sym = user[0].meta["val"].shape[0]
    if not hasattr(sym, "node"):
        return {"static": int(sym)}
    return extract_var_range_info(sym, {sym.node.expr: (batch[0], batch[2])})


def _flat(x):
    if isinstance(x, (list, tuple)):
        for item in x:
            yield from _flat(item)
    elif isinstance(x, dict):
        for item in x.values():
            yield from _flat(item)
    else:
        yield x


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--precision", nargs="+", default=["fp32", "fp16"], choices=["fp32", "fp16", "bf16"])
    p.add_argument("--batch", default="1:8:64", help="MIN:OPT:MAX batch profile")
    p.add_argument("--arch", default="k400")
    p.add_argument("--widen-factor", type=float, default=0.25,
                   help="width does not change the operators; 0.25 keeps the run short")
    p.add_argument("--checkpoint", default=None)
    p.add_argument("--json", default=None, help="also write the result here")
    args = p.parse_args(argv)
    batch = tuple(int(b) for b in args.batch.split(":"))

    replace_cuda_device_queries()
    import torch
    import torch_tensorrt

    result = {"proxy": "torch-tensorrt-rtx dry run (converter coverage only; no engine was built)",
              "torch": torch.__version__, "torch_tensorrt": torch_tensorrt.__version__,
              "package": "torch-tensorrt-rtx", "batch_profile": list(batch), "runs": []}
    for precision in args.precision:
        model, program = export_graph(precision, batch[2], args.arch, args.widen_factor, args.checkpoint)
        result["runs"].append(dry_run(program, model, precision, batch))
    result["all_supported"] = all(r["coverage_percent"] == 100.0 and r["tensorrt_blocks"] == 1
                                  and not r["unsupported_ops"] and not r["nodes_run_in_torch"]
                                  for r in result["runs"])
    text = json.dumps(result, indent=1)
    print(text)
    if args.json:
        os.makedirs(os.path.dirname(os.path.abspath(args.json)), exist_ok=True)
        with open(args.json, "w") as f:
            f.write(text + "\n")
    return 0 if result["all_supported"] else 1


if __name__ == "__main__":
    sys.exit(main())
