"""ONNX export (``torch.onnx.export(dynamo=True)``, opset >= 18) of the serving graph, dynamic batch.

The graph is the one of ``exported_program``: uint8 CLIP [batch, 16, 224, 224, 3] -> LOGITS, PROBS; custom
operators of ``torch.ops.squeezetime`` are decomposed first (the ONNX exporter cannot take them). Checked
against eager with onnxruntime (``run_onnxruntime``).
"""
from __future__ import annotations

import os

import torch

from ..errors import InputError
from .exported_program import DEFAULT_MAX_BATCH, export_program
from .graph import IMAGE_SIZE, INPUT_NAME, OUTPUT_NAMES

OPSET = 18


def export_onnx(model, path: str | os.PathLike, precision: str = "fp32", max_batch: int = DEFAULT_MAX_BATCH,
                image_size: int = IMAGE_SIZE, opset: int = OPSET) -> str:
    """Write ``path`` (.onnx, weights inside); returns the path."""
    if opset < 18:
        raise InputError(f"opset must be >= 18 (the dynamo exporter), got {opset}")
    path = os.fspath(path)
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    program = export_program(model, precision, max_batch=max_batch, image_size=image_size, decompose_custom_ops=True)
    onnx_program = torch.onnx.export(program, dynamo=True, opset_version=opset, input_names=[INPUT_NAME],
                                     output_names=list(OUTPUT_NAMES), external_data=False, verbose=False,
                                     optimize=True)
    onnx_program.save(path, external_data=False)
    import onnx

    proto = onnx.load(path)
    _name_batch_dim(proto)
    onnx.save(proto, path)
    onnx.checker.check_model(path, full_check=True)
    return path


def _name_batch_dim(proto, name: str = "batch") -> None:
    """Call the exporter's batch symbol (``s75``...) ``batch`` wherever it appears in the graph's shapes."""
    graph = proto.graph
    symbol = graph.input[0].type.tensor_type.shape.dim[0].dim_param
    if not symbol:
        return
    for value in list(graph.input) + list(graph.output) + list(graph.value_info):
        for dim in value.type.tensor_type.shape.dim:
            if dim.dim_param == symbol:
                dim.dim_param = name


def onnx_session(path: str | os.PathLike, threads: int = 0):
    import onnxruntime as ort

    options = ort.SessionOptions()
    if threads:
        options.intra_op_num_threads = threads
    return ort.InferenceSession(os.fspath(path), options, providers=["CPUExecutionProvider"])


def run_onnxruntime(path_or_session, clips) -> tuple[torch.Tensor, torch.Tensor]:
    """LOGITS, PROBS of uint8 ``clips`` (N, T, H, W, 3) through onnxruntime (CPU)."""
    import numpy as np

    session = path_or_session if hasattr(path_or_session, "run") else onnx_session(path_or_session)
    array = clips.numpy() if isinstance(clips, torch.Tensor) else np.asarray(clips)
    logits, probs = session.run(list(OUTPUT_NAMES), {INPUT_NAME: np.ascontiguousarray(array, np.uint8)})
    return torch.from_numpy(logits), torch.from_numpy(probs)
