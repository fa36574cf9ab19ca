"""TensorRT engine for Triton's ``tensorrt_plan`` backend, built with Torch-TensorRT (dynamo path).

This is the ONLY module of the package that imports ``torch_tensorrt`` (or ``tensorrt``), and only inside
functions: ``import squeezetime.export.tensorrt`` works everywhere. Its pieces:

* ``build_engine``: serving graph -> ExportedProgram (``exported_program.export_program``) ->
  ``torch_tensorrt.dynamo.convert_exported_program_to_serialized_trt_engine`` -> bytes. The engine's input
  and output bindings are named CLIP, LOGITS, PROBS (Torch-TensorRT >= 2.14 binding-name arguments), its
  optimisation profile is the batch MIN:OPT:MAX asked for, its precision is the graph's own (strongly
  typed: fp16/bf16 graphs carry fp16/bf16 weights; the uint8 CLIP is cast to float32 first, the form
  TensorRT 10 accepts for UINT8 network inputs, and LOGITS/PROBS are float32).
* ``write_model_dir``: ``DIR/squeezetime_trt/1/model.plan`` + ``config.pbtxt`` + ``1/engine.json``
  (TensorRT / Torch-TensorRT versions, GPU, compute capability, precision, profile).
* ``check_engine_compatible(model_dir)``: refuses (``EngineCompatibilityError``) an engine built with another
  TensorRT version or for another GPU architecture; what ``squeezetime serve`` calls before serving it.

No GPU and no TensorRT exist on this project's machines: ``build_engine`` runs only on a user's GPU machine.
Everything around it (the exported graph, the directory, config and metadata, the compatibility check) is
tested here, and converter coverage is checked by a dry run (scripts/trt_coverage.py, a proxy).
"""
from __future__ import annotations

import inspect
import json
import os
import platform
from datetime import datetime, timezone
from pathlib import Path

import torch

from ..errors import InputError, SqueezeTimeError
from .graph import INPUT_NAME, OUTPUT_NAMES, PRECISIONS
from .triton_models import LABELS_FILE, TRT_MODEL_NAME, trt_config

ENGINE_FILE = "model.plan"
METADATA_FILE = "engine.json"
MIN_TORCH_TENSORRT = (2, 14)
INSTALL_HINT = ("install it on a machine with an NVIDIA GPU: pip install 'squeezetime[tensorrt]' "
                "(torch-tensorrt, which brings the TensorRT libraries matching your CUDA); "
                "Torch-TensorRT and TensorRT cannot be installed on CPU-only machines")


class TensorRTUnavailable(SqueezeTimeError, ImportError):
    """torch_tensorrt (or a GPU) is missing."""


class EngineCompatibilityError(SqueezeTimeError):
    """A serialized engine that the runtime at hand cannot load (TensorRT version or GPU architecture)."""


def import_torch_tensorrt():
    """``import torch_tensorrt`` with a clear message when it (or its TensorRT libraries, or a GPU) is missing."""
    try:
        import torch_tensorrt
    except ImportError as e:
        raise TensorRTUnavailable(f"Torch-TensorRT is not installed ({e}); {INSTALL_HINT}") from e
    except (OSError, RuntimeError) as e:  # libnvinfer missing, or no NVIDIA driver (import queries the device)
        raise TensorRTUnavailable(f"Torch-TensorRT is installed but cannot load: {e}; {INSTALL_HINT}") from e
    return torch_tensorrt


def parse_batch_profile(text: str | tuple[int, int, int]) -> tuple[int, int, int]:
    """'MIN:OPT:MAX' (or a single MAX, giving 1:MAX:MAX) -> (min, opt, max) with 1 <= min <= opt <= max."""
    if isinstance(text, str):
        parts = [p for p in text.split(":")]
        try:
            values = [int(p) for p in parts]
        except ValueError:
            raise InputError(f"batch profile must be MIN:OPT:MAX integers, got {text!r}") from None
    else:
        values = [int(v) for v in text]
    if len(values) == 1:
        values = [1, values[0], values[0]]
    if len(values) != 3 or not (1 <= values[0] <= values[1] <= values[2]):
        raise InputError(f"batch profile must be MIN:OPT:MAX with 1 <= MIN <= OPT <= MAX, got {text!r}")
    return tuple(values)  # type: ignore[return-value]


def clip_shape(model, batch: int, image_size: int = 224) -> tuple[int, ...]:
    return (batch, getattr(model, "num_frames", 16), image_size, image_size, 3)


def trt_inputs(torch_tensorrt, model, batch: tuple[int, int, int], image_size: int = 224):
    """The Torch-TensorRT input spec: CLIP uint8 with the batch optimisation profile (min, opt, max)."""
    lo, opt, hi = batch
    return [torch_tensorrt.Input(min_shape=clip_shape(model, lo, image_size),
                                 opt_shape=clip_shape(model, opt, image_size),
                                 max_shape=clip_shape(model, hi, image_size), dtype=torch.uint8, name=INPUT_NAME)]


def _version_tuple(text: str) -> tuple[int, ...]:
    out = []
    for part in str(text).split("+")[0].split("."):
        digits = "".join(ch for ch in part if ch.isdigit())
        if not digits:
            break
        out.append(int(digits))
    return tuple(out)


def build_engine(model, precision: str = "fp16", batch=(1, 8, 64), image_size: int = 224,
                 optimization_level: int | None = None, workspace_size: int = 0,
                 device: str = "cuda:0") -> tuple[bytes, dict]:
    """Compile ``model``'s serving graph into a serialized TensorRT engine; returns (engine bytes, metadata).

    Needs a CUDA GPU and Torch-TensorRT >= 2.14 (``squeezetime[tensorrt]``).
    """
    from .exported_program import export_program
    from .graph import serving_graph

    if precision not in PRECISIONS:
        raise InputError(f"precision must be one of {sorted(PRECISIONS)}, got {precision!r}")
    batch = parse_batch_profile(batch)
    torch_tensorrt = import_torch_tensorrt()
    if _version_tuple(torch_tensorrt.__version__)[:2] < MIN_TORCH_TENSORRT:
        raise TensorRTUnavailable(f"Torch-TensorRT {torch_tensorrt.__version__} is too old: "
                                  f">= {'.'.join(map(str, MIN_TORCH_TENSORRT))} names engine bindings; {INSTALL_HINT}")
    if not torch.cuda.is_available():
        raise TensorRTUnavailable("building a TensorRT engine needs a CUDA GPU; none is visible")
    convert = torch_tensorrt.dynamo.convert_exported_program_to_serialized_trt_engine
    graph = serving_graph(model, precision, image_size).to(device)
    program = export_program(model, precision, max_batch=batch[2], image_size=image_size, graph=graph,
                             device=device, decompose_custom_ops=True)
    kwargs = dict(arg_inputs=trt_inputs(torch_tensorrt, model, batch, image_size), device=torch.device(device),
                  require_full_compilation=True, min_block_size=1,
                  arg_input_binding_names=(INPUT_NAME,), output_binding_names=tuple(OUTPUT_NAMES))
    if precision == "fp32":
        kwargs["disable_tf32"] = True  # fp32 engines stay within the float32 golden tolerance
    if optimization_level is not None:
        kwargs["optimization_level"] = optimization_level
    if workspace_size:
        kwargs["workspace_size"] = workspace_size
    accepted = inspect.signature(convert).parameters
    missing = [k for k in ("arg_input_binding_names", "output_binding_names") if k not in accepted]
    if missing:
        raise TensorRTUnavailable(f"this Torch-TensorRT ({torch_tensorrt.__version__}) cannot name engine "
                                  f"bindings ({', '.join(missing)}); {INSTALL_HINT}")
    engine = convert(program, **kwargs)
    return bytes(engine), engine_metadata(model, precision, batch, image_size, torch_tensorrt, device)


def tensorrt_version() -> str | None:
    """The TensorRT version importable here (``tensorrt``), or None."""
    try:
        import tensorrt
    except Exception:  # noqa: BLE001 - not installed, or libraries missing
        return None
    return getattr(tensorrt, "__version__", None)


def engine_metadata(model, precision: str, batch, image_size: int, torch_tensorrt=None,
                    device: str = "cuda:0", **extra) -> dict:
    """What an engine was built with and for; an engine only loads with the same TensorRT version."""
    gpu, capability = None, None
    if torch.cuda.is_available():
        gpu = torch.cuda.get_device_name(device)
        capability = ".".join(map(str, torch.cuda.get_device_capability(device)))
    config = getattr(model, "config", {}) or {}
    meta = {
        "format": "tensorrt_plan",
        "tensorrt_version": tensorrt_version(),
        "torch_tensorrt_version": getattr(torch_tensorrt, "__version__", None),
        "torch_version": torch.__version__,
        "cuda_version": torch.version.cuda,
        "gpu_name": gpu,
        "compute_capability": capability,
        "hardware_compatible": False,
        "version_compatible": False,
        "precision": precision,
        "tf32": False if precision == "fp32" else None,
        "batch_profile": {"min": batch[0], "opt": batch[1], "max": batch[2]},
        "input": {"name": INPUT_NAME, "dtype": "uint8",
                  "dims": [getattr(model, "num_frames", 16), image_size, image_size, 3]},
        "outputs": [{"name": n, "dtype": "float32", "dims": [_num_classes(model)]} for n in OUTPUT_NAMES],
        "arch": {k: config.get(k) for k in ("depth", "widen_factor", "num_frames", "num_classes")},
        "built_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "host": platform.node(),
    }
    meta.update(extra)
    return meta


def _num_classes(model) -> int:
    config = getattr(model, "config", {}) or {}
    if config.get("num_classes"):
        return int(config["num_classes"])
    return int(model.cls_head.fc_cls.out_features)


def write_model_dir(repo: str | os.PathLike, engine: bytes, metadata: dict, model_name: str = TRT_MODEL_NAME,
                    preferred_batch_sizes=None, max_queue_delay_us: int = 2000, version: int = 1,
                    class_names=None) -> Path:
    """``repo/model_name/{config.pbtxt, <version>/model.plan, <version>/engine.json}``; returns the model dir."""
    model_dir = Path(repo) / model_name
    version_dir = model_dir / str(version)
    version_dir.mkdir(parents=True, exist_ok=True)
    (version_dir / ENGINE_FILE).write_bytes(engine)
    meta = dict(metadata, engine_file=ENGINE_FILE, engine_bytes=len(engine))
    (version_dir / METADATA_FILE).write_text(json.dumps(meta, indent=1) + "\n")
    labels = bool(class_names)
    if labels:
        (model_dir / LABELS_FILE).write_text("\n".join(class_names) + "\n", encoding="utf-8")
    text = trt_config(model_name, num_classes=metadata["outputs"][0]["dims"][0],
                      num_frames=metadata["input"]["dims"][0], image_size=metadata["input"]["dims"][1],
                      max_batch_size=metadata["batch_profile"]["max"], preferred_batch_sizes=preferred_batch_sizes,
                      max_queue_delay_us=max_queue_delay_us, labels=labels)
    (model_dir / "config.pbtxt").write_text(text)
    return model_dir


def read_metadata(model_dir: str | os.PathLike) -> tuple[Path, dict]:
    """The engine metadata of a ``squeezetime_trt`` model directory (the highest version holding one)."""
    model_dir = Path(model_dir)
    candidates = sorted((p for p in model_dir.glob(f"*/{METADATA_FILE}") if p.parent.name.isdigit()),
                        key=lambda p: int(p.parent.name))
    if not candidates:
        raise EngineCompatibilityError(f"{model_dir} has no <version>/{METADATA_FILE}: this engine was not built "
                                       "by `squeezetime export --format tensorrt`; rebuild it on the serving host")
    path = candidates[-1]
    try:
        return path, json.loads(path.read_text())
    except (OSError, ValueError) as e:
        raise EngineCompatibilityError(f"unreadable engine metadata {path}: {e}") from e


def check_engine_compatible(model_dir: str | os.PathLike, tensorrt_version: str | None = None,
                            compute_capability: str | tuple[int, int] | None = None) -> dict:
    """Raise ``EngineCompatibilityError`` unless the engine in ``model_dir`` can load on this runtime.

    ``tensorrt_version``: the TensorRT version of the server that will load the engine (for Triton, the
    one of its release); default: ``$SQUEEZETIME_TENSORRT_VERSION``, else the ``tensorrt`` module importable
    here. An engine loads only with the TensorRT version (major.minor.patch) it was built with, unless it
    was built version-compatible. ``compute_capability`` ('9.0'): default the local GPU's, when there is one;
    a mismatch is refused unless the engine was built hardware-compatible. Returns the metadata.
    """
    path, meta = read_metadata(model_dir)
    built = meta.get("tensorrt_version")
    runtime = tensorrt_version or os.environ.get("SQUEEZETIME_TENSORRT_VERSION") or globals()["tensorrt_version"]()
    rebuild = (f"rebuild it on the serving host: squeezetime export --format tensorrt --triton-repo "
               f"{Path(model_dir).parent}")
    if not built:
        raise EngineCompatibilityError(f"{path} does not say which TensorRT built the engine; {rebuild}")
    if runtime is None:
        raise EngineCompatibilityError(
            f"cannot tell which TensorRT version will load the engine of {model_dir} (built with TensorRT "
            f"{built}): no `tensorrt` module here; set SQUEEZETIME_TENSORRT_VERSION to the TensorRT version of "
            "your Triton release (a tensorrt_plan model also needs a Triton with the TensorRT backend, i.e. an "
            "NGC tritonserver container; the CPU tritonserver bundled with nvidia-pytriton has none)")
    if not meta.get("version_compatible") and _version_tuple(built)[:3] != _version_tuple(runtime)[:3]:
        raise EngineCompatibilityError(
            f"the TensorRT engine in {model_dir} was built with TensorRT {built} but this server runs TensorRT "
            f"{runtime}; serialized engines only load with the TensorRT version that built them; {rebuild}")
    if compute_capability is None and torch.cuda.is_available():
        compute_capability = torch.cuda.get_device_capability()
    if isinstance(compute_capability, (tuple, list)):
        compute_capability = ".".join(map(str, compute_capability))
    engine_cc = meta.get("compute_capability")
    if (compute_capability and engine_cc and not meta.get("hardware_compatible")
            and str(compute_capability) != str(engine_cc)):
        raise EngineCompatibilityError(
            f"the TensorRT engine in {model_dir} was built for compute capability {engine_cc} "
            f"({meta.get('gpu_name')}) but this GPU is {compute_capability}; {rebuild}")
    return meta


def export_tensorrt(model, repo: str | os.PathLike, precision: str = "fp16", batch=(1, 8, 64),
                    preferred_batch_sizes=None, **build_kwargs) -> Path:
    """Build the engine and write the ``squeezetime_trt`` Triton model; returns the model directory."""
    engine, meta = build_engine(model, precision, batch, **build_kwargs)
    return write_model_dir(repo, engine, meta, preferred_batch_sizes=preferred_batch_sizes,
                           class_names=getattr(model, "class_names", None))


class EngineRunner:
    """Runs a serialized engine (``model.plan``) on CUDA tensors with the TensorRT Python runtime:
    uint8 CLIP (N, T, H, W, 3) on the GPU -> (LOGITS, PROBS) float32 on the GPU. GPU machines only."""

    def __init__(self, engine: bytes | str | os.PathLike):
        try:
            import tensorrt
        except Exception as e:  # noqa: BLE001
            raise TensorRTUnavailable(f"the TensorRT runtime is not importable ({e}); {INSTALL_HINT}") from e
        data = engine if isinstance(engine, (bytes, bytearray)) else Path(engine).read_bytes()
        self._logger = tensorrt.Logger(tensorrt.Logger.WARNING)
        self.engine = tensorrt.Runtime(self._logger).deserialize_cuda_engine(data)
        if self.engine is None:
            raise EngineCompatibilityError("TensorRT could not deserialize the engine (another TensorRT version "
                                           "or GPU built it?)")
        self.context = self.engine.create_execution_context()
        self.names = [self.engine.get_tensor_name(i) for i in range(self.engine.num_io_tensors)]

    def __call__(self, clips: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        clips = clips.contiguous()
        self.context.set_input_shape(INPUT_NAME, tuple(clips.shape))
        self.context.set_tensor_address(INPUT_NAME, clips.data_ptr())
        outputs = []
        for name in OUTPUT_NAMES:
            out = torch.empty(tuple(self.context.get_tensor_shape(name)), dtype=torch.float32, device=clips.device)
            self.context.set_tensor_address(name, out.data_ptr())
            outputs.append(out)
        if not self.context.execute_async_v3(torch.cuda.current_stream(clips.device).cuda_stream):
            raise RuntimeError("TensorRT execution failed")
        return outputs[0], outputs[1]
