"""Export formats around the model: ExportedProgram, ONNX, TorchScript, and a TensorRT engine for Triton.

All start from one graph (``graph.serving_graph``): uint8 CLIP [batch, 16, 224, 224, 3] -> LOGITS, PROBS
float32, BatchNorm folded, positional embeddings fixed for 224x224, dynamic batch. ``squeezetime export``
is the command line; docs/export.md the guide. Submodules import their heavy dependencies (onnx,
onnxruntime, torch_tensorrt) only when called.
"""
from .graph import INPUT_NAME, OUTPUT_NAMES, PRECISIONS, ServingGraph, fold_for_inference, serving_graph

__all__ = ["INPUT_NAME", "OUTPUT_NAMES", "PRECISIONS", "ServingGraph", "fold_for_inference", "serving_graph"]
