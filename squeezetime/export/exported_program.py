"""ExportedProgram (``torch.export``) of the serving graph, with a dynamic batch dimension.

The artifact (``.pt2``, ``torch.export.save``) is the input of every other exporter: ONNX (dynamo
exporter) and TensorRT (Torch-TensorRT dynamo path) both start from it.
"""
from __future__ import annotations

import os

import torch
from torch.export import Dim, ExportedProgram

from ..errors import ExportError
from .graph import IMAGE_SIZE, custom_ops_in, example_clip, serving_graph

DEFAULT_MAX_BATCH = 256


def export_program(model, precision: str = "fp32", max_batch: int = DEFAULT_MAX_BATCH,
                   image_size: int = IMAGE_SIZE, decompose_custom_ops: bool = False,
                   graph: torch.nn.Module | None = None, device: str | torch.device = "cpu",
                   fused_input: bool = False) -> ExportedProgram:
    """``torch.export`` of ``serving_graph(model)``: input CLIP uint8 (batch, T, H, W, 3), batch in [1, max_batch].

    Custom operators of ``torch.ops.squeezetime`` pass through (their fake kernels trace them); with
    ``decompose_custom_ops`` they are replaced by their ATen decompositions (exporters that cannot take them).
    """
    graph = graph if graph is not None else serving_graph(model, precision, image_size, fused_input=fused_input)
    num_frames = getattr(model, "num_frames", 16)
    clip = example_clip(2, num_frames, image_size).to(device)
    batch = Dim("batch", min=1, max=max(2, int(max_batch)))
    with torch.no_grad():
        program = torch.export.export(graph, (clip,), dynamic_shapes={"CLIP": {0: batch}}, strict=False)
    if decompose_custom_ops and custom_ops_in(program.graph_module):
        program = decompose(program)
    return program


def decompose(program: ExportedProgram) -> ExportedProgram:
    """Replace ``torch.ops.squeezetime.*`` calls by their pure-PyTorch references (``graph.custom_op_decompositions``)
    and lower the rest to core ATen; raises if a custom operator remains."""
    from torch.export import default_decompositions

    from .graph import custom_op_decompositions

    table = default_decompositions()
    table.update(custom_op_decompositions())
    program = program.run_decompositions(decomp_table=table)
    left = custom_ops_in(program.graph_module)
    if left:
        raise ExportError(f"custom operators without a decomposition: {left}; export the unfused model "
                           "(squeezetime.optimize(model, fused=False)) instead")
    return program


def save_program(program: ExportedProgram, path: str | os.PathLike) -> str:
    path = os.fspath(path)
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    torch.export.save(program, path)
    return path


def load_program(path: str | os.PathLike) -> ExportedProgram:
    return torch.export.load(os.fspath(path))
