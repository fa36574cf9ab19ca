"""``squeezetime archive``: a SqueezeTime checkpoint -> a TorchServe ``.mar`` (torch-model-archiver).

The archive holds:

* ``model.pth``: the checkpoint re-saved by ``save_checkpoint`` (config and class names inside, so the
  worker needs no ``--arch``); loaded with the package's safe loader, never unpickled blindly; or
  ``model.int8.zip``: an int8 artifact of ``squeezetime quantize``, copied as it is (int8 backend);
* ``squeezetime_handler.py``: the entry point (the handler code is in the installed package);
* ``model-config.yaml``: workers, batching, timeouts and the handler's settings (views, top-k, limits);
* ``index_to_name.json``: the class names; ``squeezetime_archive.json``: what built it.

The package reaches the worker by being installed in the server's environment (TorchServe runs its
workers with the Python that launched it); the archive records the package version and the handler
warns when the worker's differs.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import zipfile
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import squeezetime

from ...backends import available_backends
from ...backends.int8 import is_int8_artifact, read_artifact
from ...errors import InputError, SqueezeTimeError
from ...video import DEFAULT_BUDGET, DecodeBudget
from ..devices import check_bucket

DEFAULT_MODEL_NAME = "squeezetime"
ENTRY_FILE = "squeezetime_handler.py"
INT8_FILE = "model.int8.zip"  # the serialized file when the checkpoint is an int8 artifact
LEGACY_OPTIMIZE = {"auto": "auto", "on": "optimized", "off": "eager"}  # --optimize, before --backend


class ArchiveError(SqueezeTimeError, RuntimeError):
    """torch-model-archiver failed."""


@dataclass
class ArchiveOptions:
    model_name: str = DEFAULT_MODEL_NAME
    version: str = "1.0"
    batch_size: int = 4
    max_batch_delay_ms: int = 5  # measured: 50 ms halved throughput at concurrency 1 and gained nothing at 2-8
    workers: int = 1
    response_timeout_s: int = 120
    startup_timeout_s: int = 120
    default_views: str = "1x1"
    default_topk: int = 5
    max_clips_per_request: int = 30
    max_clips_per_forward: int = 16
    backend: str = "auto"  # the worker's Classifier backend: auto, eager, optimized
    max_video_bytes: int = 64 * 1024 * 1024
    budget: DecodeBudget = DEFAULT_BUDGET  # decoding limits per video (pixels, frames, seconds, still images)
    threads: int = 0  # torch threads per worker; 0: torch's default
    device: str = "auto"  # auto: the GPU TorchServe assigns (gpu_id) when torch has one; cpu; gpu (required)
    gpus: tuple[int, ...] = ()  # device "gpu": TorchServe's deviceIds for this model's workers (empty: all it uses)
    dtype: str | None = None  # None: float32 on the CPU, float16 on a GPU


DEVICES = ("auto", "cpu", "gpu")


def entry_source() -> str:
    return resources.files(__package__).joinpath(ENTRY_FILE).read_text(encoding="utf-8")


def model_config_yaml(opts: ArchiveOptions) -> str:
    """model-config.yaml: TorchServe's keys at top level, ours under ``handler`` (context.model_yaml_config)."""
    handler = {"squeezetime_version": squeezetime.__version__, "default_views": opts.default_views,
               "default_topk": opts.default_topk, "max_clips_per_request": opts.max_clips_per_request,
               "max_clips_per_forward": opts.max_clips_per_forward, "backend": opts.backend,
               "max_video_bytes": opts.max_video_bytes, "max_pixels": opts.budget.max_pixels,
               "max_frames": opts.budget.max_frames, "max_decode_seconds": opts.budget.max_seconds,
               "max_decoded_frames": opts.budget.max_decoded_frames, "max_duration": opts.budget.max_duration,
               "max_pixel_rate": opts.budget.pixel_rate_limit,
               "allow_still_images": opts.budget.allow_still_images,
               "threads": opts.threads, "device": opts.device, "dtype": opts.dtype}
    lines = [
        "# Written by `squeezetime archive`. TorchServe reads the top-level keys; the handler reads `handler`.",
        f"minWorkers: {opts.workers}",
        f"maxWorkers: {opts.workers}",
        f"batchSize: {opts.batch_size}          # requests merged into one handler call (one model batch)",
        f"maxBatchDelay: {opts.max_batch_delay_ms}      # ms a partial batch waits for more requests",
        f"responseTimeout: {opts.response_timeout_s}   # s per batch before the worker is restarted",
        f"startupTimeout: {opts.startup_timeout_s}    # s for the handler's initialize()",
        *device_lines(opts),
        "handler:",
    ]
    lines += [f"  {k}: {json.dumps(v)}" for k, v in handler.items()]
    return "\n".join(lines) + "\n"


def device_lines(opts: ArchiveOptions) -> list[str]:
    """TorchServe's deviceType/deviceIds for ``--device cpu|gpu`` (none for auto: TorchServe's own choice)."""
    if opts.device == "auto":
        return []
    lines = [f"deviceType: {opts.device}        # TorchServe places the workers (gpu: a gpu_id each, round robin)"]
    if opts.gpus:
        lines.append(f"deviceIds: [{', '.join(str(int(g)) for g in opts.gpus)}]")
    if opts.device == "gpu":
        lines += ["# On a GPU a batch of clips is padded to a CUDA graph bucket (1, 2, 4, ..., 256): batchSize and",
                  f"# max_clips_per_forward are buckets, and each worker captures the graphs of the buckets up to "
                  f"{opts.max_clips_per_forward} before READY."]
    return lines


def _validate(opts: ArchiveOptions) -> None:
    if not opts.model_name or not all(c.isalnum() or c in "_-" for c in opts.model_name):
        raise InputError(f"model name {opts.model_name!r}: use letters, digits, '_' and '-'")
    for name in ("batch_size", "workers", "default_topk", "max_clips_per_request", "max_clips_per_forward"):
        if getattr(opts, name) < 1:
            raise InputError(f"{name.replace('_', '-')} must be >= 1, got {getattr(opts, name)}")
    if opts.max_batch_delay_ms < 0:
        raise InputError("max-batch-delay-ms must be >= 0")
    if opts.backend not in available_backends():
        raise InputError(f"backend must be one of {available_backends()}")
    if opts.device not in DEVICES:
        raise InputError(f"device must be one of {list(DEVICES)}, got {opts.device!r}")
    if opts.gpus and (opts.device != "gpu" or min(opts.gpus) < 0):
        raise InputError(f"gpus (device ids >= 0) go with device 'gpu', got device {opts.device!r}, gpus {opts.gpus}")
    if opts.device == "gpu":
        check_bucket(opts.batch_size, "batch-size")
        check_bucket(opts.max_clips_per_forward, "max-clips-per-forward")


class _ModelSource:
    """A float model: re-saved as ``model.pth`` (save_checkpoint: config and class names inside)."""

    def __init__(self, model):
        if model.cls_head is None:
            raise InputError("a backbone-only model (no classification head) cannot be served as a classifier")
        self.model, self.data_config, self.config = model, model.data_config, model.config
        self.class_names = list(model.class_names or [])

    def write(self, stage: Path) -> Path:
        squeezetime.save_checkpoint(self.model, stage / "model.pth")
        return stage / "model.pth"


class _Int8Source:
    """An int8 artifact of ``squeezetime quantize``: copied as it is (the worker's load() recognises it)."""

    def __init__(self, artifact, path, opts: ArchiveOptions):
        if opts.backend not in ("auto", "int8") or opts.device == "gpu":
            raise InputError(f"an int8 artifact is served by the int8 backend on the CPU, not {opts.backend!a} "
                             f"on device {opts.device!a}")
        self.path, self.data_config = path, artifact.data_config
        self.config = artifact.meta.get("source", {}).get("model_config", {})
        self.class_names = artifact.class_names

    def write(self, stage: Path) -> Path:
        shutil.copyfile(self.path, stage / INT8_FILE)
        return stage / INT8_FILE


def build_archive(out_dir: str | os.PathLike, *, checkpoint: str | os.PathLike | None = None,
                  arch: str | None = None, options: ArchiveOptions | None = None, force: bool = True) -> Path:
    """Write ``<out_dir>/<model_name>.mar``; ``checkpoint=None`` archives the demo model, an int8 artifact is
    archived as it is. Returns its path."""
    opts = options or ArchiveOptions()
    _validate(opts)
    if checkpoint and is_int8_artifact(checkpoint):
        source = _Int8Source(read_artifact(checkpoint), checkpoint, opts)
    else:
        source = _ModelSource(squeezetime.load_checkpoint(checkpoint, arch=arch) if checkpoint
                              else squeezetime.demo_model())
    source.data_config.view(opts.default_views)  # an unknown name is an InputError
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    target = out / f"{opts.model_name}.mar"
    if target.exists() and not force:
        raise FileExistsError(f"{target} exists")
    with tempfile.TemporaryDirectory(prefix="squeezetime-mar-") as tmp:
        stage = Path(tmp)
        serialized = source.write(stage)
        (stage / ENTRY_FILE).write_text(entry_source(), encoding="utf-8")
        (stage / "model-config.yaml").write_text(model_config_yaml(opts), encoding="utf-8")
        names = source.class_names
        (stage / "index_to_name.json").write_text(json.dumps({str(i): n for i, n in enumerate(names)}, indent=1))
        (stage / "squeezetime_archive.json").write_text(json.dumps({
            "squeezetime_version": squeezetime.__version__, "model_name": opts.model_name,
            "checkpoint": os.path.basename(os.fspath(checkpoint)) if checkpoint else "demo",
            "config": source.config, "num_classes": len(names)}, indent=1, default=str))
        cmd = [sys.executable, "-c", "import sys; from model_archiver.model_packaging import "
               "generate_model_archive as g; sys.exit(g())",
               "--model-name", opts.model_name, "--version", opts.version,
               "--serialized-file", str(serialized), "--handler", str(stage / ENTRY_FILE),
               "--extra-files", f"{stage / 'index_to_name.json'},{stage / 'squeezetime_archive.json'}",
               "--config-file", str(stage / "model-config.yaml"), "--export-path", str(out), "--force"]
        scratch = stage / "tmp"  # the archiver copies into TMPDIR/<model name>: private, so builds never collide
        scratch.mkdir()
        proc = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=300,
                              env={**os.environ, "TMPDIR": str(scratch)})
        if proc.returncode != 0 or not target.exists():
            raise ArchiveError(f"torch-model-archiver failed ({proc.returncode}): {proc.stdout.strip()[-2000:]}")
    return target


def archive_model_name(mar: str | os.PathLike) -> str:
    """The model name recorded in a .mar's MANIFEST.json (what TorchServe registers it as)."""
    with zipfile.ZipFile(mar) as z:
        return json.loads(z.read("MAR-INF/MANIFEST.json"))["model"]["modelName"]

