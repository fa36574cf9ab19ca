"""Triton model directories for exported artifacts, next to the ``squeezetime`` python-backend model.

Every model here has the I/O of the ``squeezetime`` model (squeezetime/serving/triton): input CLIP uint8
[16, 224, 224, 3], outputs LOGITS and PROBS float32 [classes], a batch dimension from ``max_batch_size``
and dynamic batching. Only the backend differs:

* ``squeezetime_trt``         ``platform: "tensorrt_plan"``, ``1/model.plan`` (Torch-TensorRT engine), KIND_GPU.
* ``squeezetime_onnx``        ``platform: "onnxruntime_onnx"``, ``1/model.onnx``; on GPU instances the config
                              turns on onnxruntime's TensorRT execution provider (``gpu_execution_accelerator``).
* ``squeezetime_onnx_python`` ``backend: "python"`` running ``1/model.onnx`` with onnxruntime on the CPU, for
                              servers with the python backend only (the tritonserver bundled with nvidia-pytriton).
* ``squeezetime_libtorch``    ``platform: "pytorch_libtorch"``, ``1/model.pt`` (TorchScript). libtorch's naming
                              convention ``<name>__<index>`` makes its outputs LOGITS__0 and PROBS__1.

Each config parses with ``tritonclient``'s model-config protobuf (``parse_config``).
"""
from __future__ import annotations

import os
import shutil
from importlib import resources
from pathlib import Path

from ..errors import InputError
from .graph import INPUT_NAME, OUTPUT_NAMES

TRT_MODEL_NAME = "squeezetime_trt"
ONNX_MODEL_NAME = "squeezetime_onnx"
ONNX_PYTHON_MODEL_NAME = "squeezetime_onnx_python"
LIBTORCH_MODEL_NAME = "squeezetime_libtorch"
LABELS_FILE = "labels.txt"


def preferred_sizes(max_batch_size: int, preferred=None) -> list[int]:
    """Preferred dynamic-batching sizes: the given ones, else powers of two from 8 up to max_batch_size (and it)."""
    if preferred:
        sizes = sorted({int(s) for s in preferred})
    else:
        sizes = sorted({s for s in (8, 16, 32, 64, 128, 256) if s <= max_batch_size} | {max_batch_size})
    if sizes[0] < 1 or sizes[-1] > max_batch_size:
        raise InputError(f"preferred batch sizes {sizes} must lie in 1..{max_batch_size}")
    return sizes


def _io_block(num_classes: int, num_frames: int, image_size: int, output_names=OUTPUT_NAMES,
              labels: bool = False) -> str:
    outs = []
    for i, name in enumerate(output_names):
        label = f'\n    label_filename: "{LABELS_FILE}"' if labels and OUTPUT_NAMES[i] == "PROBS" else ""
        outs.append(f'  {{\n    name: "{name}"\n    data_type: TYPE_FP32\n    dims: [ {num_classes} ]{label}\n  }}')
    return (f'input [\n  {{\n    name: "{INPUT_NAME}"\n    data_type: TYPE_UINT8\n'
            f'    dims: [ {num_frames}, {image_size}, {image_size}, 3 ]\n  }}\n]\n'
            f'output [\n' + ",\n".join(outs) + "\n]\n")


def _batching(max_batch_size: int, preferred, max_queue_delay_us: int) -> str:
    sizes = ", ".join(str(s) for s in preferred_sizes(max_batch_size, preferred))
    return (f"dynamic_batching {{\n  preferred_batch_size: [ {sizes} ]\n"
            f"  max_queue_delay_microseconds: {int(max_queue_delay_us)}\n}}\n")


def _instances(kind: str, count: int = 1) -> str:
    return f"instance_group [\n  {{\n    count: {int(count)}\n    kind: {kind}\n  }}\n]\n"


def trt_config(name: str = TRT_MODEL_NAME, *, num_classes: int, num_frames: int = 16, image_size: int = 224,
               max_batch_size: int = 64, preferred_batch_sizes=None, max_queue_delay_us: int = 2000,
               instances: int = 1, labels: bool = False) -> str:
    """config.pbtxt of the Torch-TensorRT engine model; ``max_batch_size`` is the profile's MAX."""
    return (f"# SqueezeTime TensorRT engine (written by `squeezetime export --format tensorrt`).\n"
            f"# The engine loads only with the TensorRT version named in 1/engine.json.\n"
            f'name: "{name}"\nplatform: "tensorrt_plan"\nmax_batch_size: {int(max_batch_size)}\n'
            + _io_block(num_classes, num_frames, image_size, labels=labels)
            + _batching(max_batch_size, preferred_batch_sizes, max_queue_delay_us)
            + _instances("KIND_GPU", instances)
            + 'default_model_filename: "model.plan"\n')


def onnx_config(name: str = ONNX_MODEL_NAME, *, num_classes: int, num_frames: int = 16, image_size: int = 224,
                max_batch_size: int = 64, preferred_batch_sizes=None, max_queue_delay_us: int = 2000,
                kind: str = "gpu", instances: int = 1, trt_precision: str = "FP16",
                trt_workspace_bytes: int = 1 << 30, labels: bool = False) -> str:
    """config.pbtxt of the onnxruntime model; ``kind="gpu"`` adds the TensorRT execution accelerator."""
    if kind not in ("gpu", "cpu"):
        raise InputError(f"kind must be 'gpu' or 'cpu', got {kind!r}")
    text = (f"# SqueezeTime ONNX (written by `squeezetime export --format onnx --triton-repo`).\n"
            f'name: "{name}"\nplatform: "onnxruntime_onnx"\nmax_batch_size: {int(max_batch_size)}\n'
            + _io_block(num_classes, num_frames, image_size, labels=labels)
            + _batching(max_batch_size, preferred_batch_sizes, max_queue_delay_us)
            + _instances("KIND_GPU" if kind == "gpu" else "KIND_CPU", instances)
            + 'default_model_filename: "model.onnx"\n')
    if kind == "gpu":
        text += ("optimization {\n  execution_accelerators {\n    gpu_execution_accelerator : [ {\n"
                 '      name : "tensorrt"\n'
                 f'      parameters {{ key: "precision_mode" value: "{trt_precision}" }}\n'
                 f'      parameters {{ key: "max_workspace_size_bytes" value: "{int(trt_workspace_bytes)}" }}\n'
                 '      parameters { key: "trt_engine_cache_enable" value: "1" }\n'
                 '      parameters { key: "trt_engine_cache_path" value: "/tmp/squeezetime_trt_cache" }\n'
                 "    } ]\n  }\n}\n")
    return text


def onnx_python_config(name: str = ONNX_PYTHON_MODEL_NAME, *, num_classes: int, num_frames: int = 16,
                       image_size: int = 224, max_batch_size: int = 8, preferred_batch_sizes=None,
                       max_queue_delay_us: int = 2000, instances: int = 1, num_threads: int = 0,
                       labels: bool = False) -> str:
    """config.pbtxt of the python-backend model that runs model.onnx with onnxruntime (CPU)."""
    return (f"# SqueezeTime ONNX run by onnxruntime inside Triton's python backend (CPU).\n"
            f'name: "{name}"\nbackend: "python"\nmax_batch_size: {int(max_batch_size)}\n'
            + _io_block(num_classes, num_frames, image_size, labels=labels)
            + _batching(max_batch_size, preferred_batch_sizes, max_queue_delay_us)
            + _instances("KIND_CPU", instances)
            + 'parameters [\n  { key: "onnx_file" value: { string_value: "model.onnx" } },\n'
            + f'  {{ key: "num_threads" value: {{ string_value: "{int(num_threads)}" }} }}\n]\n')


def libtorch_config(name: str = LIBTORCH_MODEL_NAME, *, num_classes: int, num_frames: int = 16,
                    image_size: int = 224, max_batch_size: int = 64, preferred_batch_sizes=None,
                    max_queue_delay_us: int = 2000, kind: str = "gpu", instances: int = 1) -> str:
    outs = [f"{n}__{i}" for i, n in enumerate(OUTPUT_NAMES)]
    return (f"# SqueezeTime TorchScript for Triton's libtorch backend (outputs follow its <name>__<index> rule).\n"
            f'name: "{name}"\nplatform: "pytorch_libtorch"\nmax_batch_size: {int(max_batch_size)}\n'
            + _io_block(num_classes, num_frames, image_size, output_names=outs)
            + _batching(max_batch_size, preferred_batch_sizes, max_queue_delay_us)
            + _instances("KIND_GPU" if kind == "gpu" else "KIND_CPU", instances)
            + 'default_model_filename: "model.pt"\n')


def parse_config(text: str):
    """Parse (and so validate) a config.pbtxt with tritonclient's ModelConfig protobuf; unknown fields raise."""
    from google.protobuf import text_format
    from tritonclient.grpc import model_config_pb2

    return text_format.Parse(text, model_config_pb2.ModelConfig())


def _write_labels(model_dir: Path, class_names) -> bool:
    if not class_names:
        return False
    (model_dir / LABELS_FILE).write_text("\n".join(class_names) + "\n", encoding="utf-8")
    return True


def _place(artifact: str | os.PathLike, dest: Path) -> None:
    dest.parent.mkdir(parents=True, exist_ok=True)
    if Path(artifact).resolve() != dest.resolve():
        shutil.copyfile(artifact, dest)


def write_onnx_model_dir(repo: str | os.PathLike, onnx_path: str | os.PathLike, *, num_classes: int,
                         class_names=None, python_backend: bool = False, kind: str = "gpu",
                         max_batch_size: int = 64, preferred_batch_sizes=None, max_queue_delay_us: int = 2000,
                         num_frames: int = 16, image_size: int = 224, instances: int = 1,
                         num_threads: int = 0) -> Path:
    """``repo/squeezetime_onnx`` (onnxruntime backend) or ``repo/squeezetime_onnx_python`` (python backend)."""
    name = ONNX_PYTHON_MODEL_NAME if python_backend else ONNX_MODEL_NAME
    model_dir = Path(repo) / name
    _place(onnx_path, model_dir / "1" / "model.onnx")
    labels = _write_labels(model_dir, class_names)
    common = dict(num_classes=num_classes, num_frames=num_frames, image_size=image_size,
                  max_batch_size=max_batch_size, preferred_batch_sizes=preferred_batch_sizes,
                  max_queue_delay_us=max_queue_delay_us, instances=instances, labels=labels)
    if python_backend:
        text = onnx_python_config(name, num_threads=num_threads, **common)
        source = resources.files("squeezetime.export").joinpath("triton_onnx_model.py").read_text(encoding="utf-8")
        (model_dir / "1" / "model.py").write_text(source, encoding="utf-8")
    else:
        text = onnx_config(name, kind=kind, **common)
    (model_dir / "config.pbtxt").write_text(text)
    return model_dir


def write_libtorch_model_dir(repo: str | os.PathLike, torchscript_path: str | os.PathLike, *, num_classes: int,
                             kind: str = "gpu", max_batch_size: int = 64, preferred_batch_sizes=None,
                             num_frames: int = 16, image_size: int = 224) -> Path:
    model_dir = Path(repo) / LIBTORCH_MODEL_NAME
    _place(torchscript_path, model_dir / "1" / "model.pt")
    (model_dir / "config.pbtxt").write_text(libtorch_config(
        num_classes=num_classes, num_frames=num_frames, image_size=image_size, max_batch_size=max_batch_size,
        preferred_batch_sizes=preferred_batch_sizes, kind=kind))
    return model_dir
