"""On-disk cache of converted engines (the ONNX file, the OpenVINO IR): one folder per key.

The key is a hash of everything the artifact depends on: the weights (names, shapes, dtypes, bytes), the
normalisation and clip geometry baked into the graph, the exporter's own source, and the versions of torch,
squeezetime and the engine. Folder: ``$SQUEEZETIME_CACHE/<kind>/<key>`` (default ``$XDG_CACHE_HOME/squeezetime``
or ``~/.cache/squeezetime``). An entry is written into a temporary folder and renamed into place, so a
concurrent reader sees a whole entry or none.
"""
from __future__ import annotations

import hashlib
import importlib.metadata
import os
import shutil
import tempfile
from pathlib import Path
from typing import Callable

import torch

CACHE_ENV = "SQUEEZETIME_CACHE"


def cache_root() -> Path:
    env = os.environ.get(CACHE_ENV)
    if env:
        return Path(env).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "squeezetime"


def package_version(name: str) -> str:
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return "absent"


def weights_digest(model: torch.nn.Module) -> str:
    """A hash of the state dict: a checkpoint changed in place gets a new key."""
    h = hashlib.blake2b(digest_size=16)
    for name, t in model.state_dict().items():
        t = t.detach().cpu().contiguous().reshape(-1)  # 0-d tensors (num_batches_tracked) too
        h.update(f"{name}|{tuple(t.shape)}|{t.dtype}|".encode())
        h.update(t.view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return h.hexdigest()


def _exporter_digest() -> str:
    """The exporter's source (graph, torch.export, ONNX): a changed graph without a version bump is a new key."""
    from ..export import exported_program, graph, onnx

    h = hashlib.blake2b(digest_size=8)
    for module in (graph, exported_program, onnx):
        h.update(Path(module.__file__).read_bytes())
    return h.hexdigest()


def cache_key(model: torch.nn.Module, mean, std, image_size: int, **extra) -> str:
    """Key of an artifact converted from ``model`` at ``image_size``; ``extra``: engine versions, dtype..."""
    parts = {"weights": weights_digest(model), "mean": [float(m) for m in mean], "std": [float(s) for s in std],
             "frames": getattr(model, "num_frames", 16), "size": int(image_size), "torch": torch.__version__,
             "squeezetime": package_version("squeezetime"), "exporter": _exporter_digest(), **extra}
    return hashlib.blake2b(repr(sorted(parts.items())).encode(), digest_size=12).hexdigest()


def engine_key(model: torch.nn.Module, image_size: int, package: str) -> str:
    """Key of ``model``'s conversion for the engine ``package`` (onnx, openvino): its DataConfig's mean and std
    (the graph normalises) and the package's version."""
    dc = model.data_config
    return cache_key(model, dc.mean, dc.std, image_size, **{package: package_version(package)})


def is_cached(kind: str, key: str, filename: str) -> bool:
    return (cache_root() / kind / key / filename).is_file()


def cached(kind: str, key: str, filename: str, write: Callable[[Path], None]) -> tuple[Path, bool]:
    """``<root>/<kind>/<key>/<filename>``, written by ``write(folder)`` when absent. Returns (path, was cached)."""
    entry = cache_root() / kind / key
    if (entry / filename).is_file():
        return entry / filename, True
    if entry.exists():  # a broken entry (interrupted by hand): rebuild it
        shutil.rmtree(entry, ignore_errors=True)
    entry.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{key}.", dir=entry.parent))
    try:
        write(tmp)
        try:
            os.replace(tmp, entry)
        except OSError:  # another process put the entry in place first: use theirs
            if not (entry / filename).is_file():
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return entry / filename, False
