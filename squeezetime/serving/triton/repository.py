"""Write a self-contained Triton model repository: configs, model code, weights and class names.

    squeezetime triton-repo --demo --out repo/
    tritonserver --model-repository repo/

Layout (Triton's conventions)::

    repo/squeezetime/config.pbtxt          python backend, CLIP -> LOGITS, PROBS, dynamic batching
    repo/squeezetime/labels.txt            class names (label_filename of PROBS: Triton's classification extension)
    repo/squeezetime/data_config.json      frames, interval, views, mean/std (squeezetime.DataConfig)
    repo/squeezetime/1/model.py            -> squeezetime.serving.triton.clip_model.ClipModel
    repo/squeezetime/1/model.pth           the weights (save_checkpoint format, loaded safely), or
    repo/squeezetime/1/model.int8.zip      an int8 artifact of ``squeezetime quantize`` (--checkpoint FILE)
    repo/squeezetime_video/config.pbtxt    python backend, VIDEO [+ VIEWS, TOPK] -> LABELS, SCORES (BLS)
    repo/squeezetime_video/labels.txt
    repo/squeezetime_video/1/model.py      -> squeezetime.serving.triton.video_model.VideoModel
    repo/squeezetime_timeline/...          decoupled, VIDEO [+ STRIDE, TOPK] -> one response per window (BLS)

``kind="gpu"`` (``--kind gpu``) puts ``squeezetime`` and ``squeezetime_video`` in ``KIND_GPU`` instance groups
(``count`` instances on each GPU of ``gpus``, every visible GPU when empty): the clip model then loads its
``Classifier`` on ``cuda:<device id>`` (fp16 unless ``dtype`` says otherwise) and captures the CUDA graph of
every batch bucket up to ``max_batch_size`` at load; ``max_batch_size`` must be a bucket and the dynamic
batcher's preferred sizes are those buckets. The video model decodes on the CPU either way (its instances
are placed per GPU, so decoding capacity grows with the GPUs its clips feed).

The templates ship inside the package (``squeezetime/serving/triton/templates``); the project's
``triton_repo/`` links to them. A Torch-TensorRT ``tensorrt_plan`` model joins as another entry of ``MODELS``.
"""
from __future__ import annotations

import json
import os
import shutil
import string
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

from ...backends import DTYPES, available_backends
from ...backends.int8 import is_int8_artifact, read_artifact
from ...errors import InputError
from ...video import DEFAULT_BUDGET, DecodeBudget
from ..devices import check_bucket, graph_buckets
from ..requests import DEFAULT_MAX_VIDEO_BYTES
from .request_model import DATA_CONFIG_FILE, LABELS_FILE

CLIP_MODEL = "squeezetime"
VIDEO_MODEL = "squeezetime_video"
TIMELINE_MODEL = "squeezetime_timeline"  # decoupled: one streamed response per window (timeline_model.py)
MODELS = (CLIP_MODEL, VIDEO_MODEL, TIMELINE_MODEL)
KINDS = {"cpu": "KIND_CPU", "gpu": "KIND_GPU"}
INT8_FILE = "model.int8.zip"  # an artifact of `squeezetime quantize`, copied as it is


@dataclass
class RepoOptions:
    max_batch_size: int = 8
    instances: int = 1
    video_instances: int = 2
    kind: str = "cpu"
    gpus: tuple[int, ...] = ()        # kind "gpu": the device ids of the instance groups (empty: every visible GPU)
    dtype: str | None = None          # None: float32 on the CPU, float16 on a GPU
    num_threads: int = 0              # 0: all cores (torch.set_num_threads in the clip model)
    max_queue_delay_us: int = 2000
    max_queue_size: int = 64          # requests waiting per model; beyond it Triton answers UNAVAILABLE at once
    queue_timeout_us: int = 0         # reject a request that waited this long in the queue (0: no timeout)
    max_video_bytes: int = DEFAULT_MAX_VIDEO_BYTES
    budget: DecodeBudget = DEFAULT_BUDGET     # decoding limits of squeezetime_video (pixels, frames, seconds)
    backend: str = "auto"             # the clip model's Classifier backend (auto, eager, optimized)
    decode_threads: int = 4           # squeezetime_video: threads decoding videos, per instance
    max_in_flight: int = 0            # squeezetime_video: requests decoded/scored at once per instance (0: 2 x threads)
    warmup: bool = True               # squeezetime_video: decode a tiny video in each decode thread at load
    extra: dict = field(default_factory=dict)

    def validate(self) -> None:
        if not 1 <= self.max_batch_size <= 1024:
            raise InputError(f"max_batch_size must be in 1..1024, got {self.max_batch_size}")
        if self.instances < 1 or self.video_instances < 1:
            raise InputError("instance counts must be >= 1")
        if self.kind not in KINDS:
            raise InputError(f"kind must be one of {sorted(KINDS)}, got {self.kind!r}")
        if self.dtype is not None and self.dtype not in DTYPES:
            raise InputError(f"dtype must be one of {sorted(DTYPES)}, got {self.dtype!r}")
        if self.gpus and (self.kind != "gpu" or any(int(g) < 0 for g in self.gpus)):
            raise InputError(f"gpus (device ids >= 0) go with kind 'gpu', got kind {self.kind!r}, gpus {self.gpus}")
        if self.kind == "gpu":
            check_bucket(self.max_batch_size, "max_batch_size")
        if self.max_queue_size < 1 or self.queue_timeout_us < 0:
            raise InputError("max_queue_size must be >= 1 and queue_timeout_us >= 0")
        if self.max_video_bytes < 1:
            raise InputError("max_video_bytes must be >= 1")
        if self.decode_threads < 1 or self.max_in_flight < 0:
            raise InputError("decode_threads must be >= 1 and max_in_flight >= 0")
        if self.backend not in available_backends():
            raise InputError(f"backend must be one of {available_backends()}, got {self.backend!r}")


def template_dir() -> Path:
    return Path(str(resources.files("squeezetime.serving.triton").joinpath("templates")))


def compute_dtype(options: RepoOptions) -> str:
    """The clip model's precision: the one asked for, else float16 on a GPU and float32 on the CPU."""
    return options.dtype or ("float16" if options.kind == "gpu" else "float32")


def placement_values(options: RepoOptions) -> dict[str, str]:
    """The template fields that differ between CPU and GPU repositories: instance kinds and GPUs, and the sizes
    the dynamic batcher prefers (on a GPU: the CUDA graph buckets, since any other size is padded to one)."""
    gpu = options.kind == "gpu"
    sizes = graph_buckets(options.max_batch_size) if gpu else (options.max_batch_size,)
    note = ("# preferred_batch_size: the CUDA graph buckets up to max_batch_size (a batch of another size is padded "
            "to the next bucket);\n# the clip model captures the graph of each of them at load."
            if gpu else "# preferred_batch_size: full batches (the CPU kernels have no per-size graphs).")
    return dict(kind=KINDS[options.kind], video_kind=KINDS[options.kind],
                gpus=f"\n    gpus: [ {', '.join(str(int(g)) for g in options.gpus)} ]" if options.gpus else "",
                preferred_batch_sizes=", ".join(str(s) for s in sizes), batching_note=note)


def render_config(model: str, values: dict) -> str:
    text = (template_dir() / model / "config.pbtxt").read_text(encoding="utf-8")
    return string.Template(text).substitute({k: str(v) for k, v in values.items()})


def write_repository(out: str | os.PathLike, model=None, *, checkpoint: str | os.PathLike | None = None,
                     arch: str | None = None, options: RepoOptions | None = None, overwrite: bool = True) -> Path:
    """Write the repository for ``model`` (a SqueezeTime) or ``checkpoint`` (loaded safely, then re-saved; an int8
    artifact of ``squeezetime quantize`` is copied as it is and served by the int8 backend).

    Returns the repository path. Existing model directories of ours under ``out`` are replaced.
    """
    import squeezetime
    from squeezetime.classifier import label_names

    options = options or RepoOptions()
    options.validate()
    int8 = model is None and checkpoint is not None and is_int8_artifact(checkpoint)
    if int8:  # `squeezetime quantize` output: served as it is, by the int8 backend
        artifact = read_artifact(checkpoint)
        if options.backend not in ("auto", "int8") or options.dtype not in (None, "float32") or options.kind != "cpu":
            raise InputError("an int8 artifact is served by the int8 backend in its own precision "
                             "on the CPU (backend auto or int8, dtype float32, kind cpu)")
        names, data_config = artifact.class_names, artifact.data_config
    else:
        if model is None:
            if checkpoint is None:
                raise InputError("give a model or a checkpoint")
            model = squeezetime.load_checkpoint(checkpoint, arch=arch)
        if model.cls_head is None:
            raise InputError("this model has no classification head; Triton serving needs class scores")
        names = label_names(model)
        data_config = model.data_config or squeezetime.DataConfig.for_model_config(model.config)
    if any("\n" in n or not n.strip() for n in names):
        raise InputError("class names must be non-empty single lines")
    weights = INT8_FILE if int8 else "model.pth"
    values = dict(checkpoint=weights, max_batch_size=options.max_batch_size, num_frames=data_config.num_frames,
                  crop_size=data_config.crop_size,
                  num_classes=len(names), instances=options.instances, video_instances=options.video_instances,
                  dtype=compute_dtype(options), num_threads=options.num_threads,
                  max_queue_delay_us=options.max_queue_delay_us, max_queue_size=options.max_queue_size,
                  queue_timeout_us=options.queue_timeout_us, max_video_bytes=options.max_video_bytes,
                  max_pixels=options.budget.max_pixels, max_frames=options.budget.max_frames,
                  max_decode_seconds=options.budget.max_seconds, max_decoded_frames=options.budget.max_decoded_frames,
                  max_duration=options.budget.max_duration, max_pixel_rate=options.budget.pixel_rate_limit,
                  allow_still_images=str(options.budget.allow_still_images).lower(),
                  backend=options.backend, decode_threads=options.decode_threads,
                  max_in_flight=options.max_in_flight, warmup=str(bool(options.warmup)).lower(),
                  **placement_values(options), **options.extra)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    for name in MODELS:
        target = out / name
        if target.exists():
            if not overwrite:
                raise InputError(f"{target} exists")
            shutil.rmtree(target)
        (target / "1").mkdir(parents=True)
        (target / "config.pbtxt").write_text(render_config(name, values), encoding="utf-8")
        shutil.copyfile(template_dir() / name / "1" / "model.py", target / "1" / "model.py")
        (target / LABELS_FILE).write_text("".join(n + "\n" for n in names), encoding="utf-8")
        (target / DATA_CONFIG_FILE).write_text(json.dumps(data_config.to_dict(), indent=1), encoding="utf-8")
    if int8:
        shutil.copyfile(checkpoint, out / CLIP_MODEL / "1" / weights)
    else:
        squeezetime.save_checkpoint(model, out / CLIP_MODEL / "1" / weights)
    return out


def parse_config(path: str | os.PathLike):
    """config.pbtxt -> tritonclient's ModelConfig protobuf (unknown fields and bad values raise ParseError)."""
    from google.protobuf import text_format
    from tritonclient.grpc import model_config_pb2

    return text_format.Parse(Path(path).read_text(encoding="utf-8"), model_config_pb2.ModelConfig())


__all__ = ["CLIP_MODEL", "KINDS", "MODELS", "RepoOptions", "TIMELINE_MODEL", "VIDEO_MODEL", "compute_dtype",
           "parse_config", "placement_values", "render_config", "template_dir", "write_repository"]
