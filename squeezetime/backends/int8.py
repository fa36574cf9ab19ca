"""The int8 artifact of ``squeezetime quantize`` and the backend that serves it (OpenVINO, post-training static
quantisation by NNCF).

The artifact is one zip file, read without executing anything it holds:

    squeezetime_int8.json   what it is: format, class names, DataConfig, the fp32 model it came from, the
                            calibration and the accuracy gate's figures (plain JSON)
    model.xml, model.bin    the quantised network as OpenVINO IR: a graph description and raw weights

OpenVINO's IR is data (operations of its opset and their constants), not code: reading it runs no Python and
loads no extension library (this module never calls ``Core.add_extension``). The members are read into memory,
never extracted, so no member name reaches the file system. A torch checkpoint is a zip too; the
``squeezetime_int8.json`` member is what tells the two apart.

The network is the project's ONNX export (``squeezetime.export.onnx``) quantised: it takes the uint8 clip
``CLIP (N, T, crop, crop, 3)`` and normalises it itself (the DataConfig's mean and std, as the ``onnxruntime`` and
``openvino`` backends), and answers ``LOGITS`` (N, classes) float32.
"""
from __future__ import annotations

import io
import json
import os
import threading
import zipfile
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from ..data_config import DataConfig
from ..errors import CheckpointError

FORMAT = "squeezetime-int8"
FORMAT_VERSION = 1
META_FILE, XML_FILE, BIN_FILE = "squeezetime_int8.json", "model.xml", "model.bin"
OUTPUT = "LOGITS"
SUFFIX = ".int8.zip"  # what `squeezetime quantize` suggests; recognition is by content
MAX_META_BYTES = 16 * 1024 * 1024


class Int8ArtifactError(CheckpointError):
    """A file that is not a readable int8 artifact (corrupt, foreign, or of a newer format)."""


@dataclass
class Int8Artifact:
    """A read artifact: the metadata and the IR bytes (nothing compiled yet)."""

    meta: dict
    xml: bytes
    weights: bytes

    @property
    def class_names(self) -> list[str]:
        return list(self.meta["class_names"])

    @property
    def data_config(self) -> DataConfig:
        return DataConfig.from_dict(self.meta["data_config"])


def _is_zip_with_meta(source) -> bool:
    try:
        with zipfile.ZipFile(source) as z:
            return META_FILE in z.namelist()
    except (zipfile.BadZipFile, OSError, ValueError):
        return False


def is_int8_artifact(source) -> bool:
    """True when ``source`` (a path or bytes) is named ``*.int8.zip`` or is a zip holding ``squeezetime_int8.json``
    (cheap: its first local header or the central directory). A truncated or corrupt artifact is still
    recognised, so ``read_artifact`` says what is wrong with it instead of a checkpoint loader failing."""
    if isinstance(source, (bytes, bytearray)):
        return bytes(source[:4]) == b"PK\x03\x04" and _is_zip_with_meta(io.BytesIO(source))
    if isinstance(source, (str, os.PathLike)) and os.path.isfile(source):
        if os.fspath(source).endswith(SUFFIX):
            return True
        with open(source, "rb") as f:
            head = f.read(30 + len(META_FILE))
        if head[:4] != b"PK\x03\x04":
            return False
        return head[30:] == META_FILE.encode() or _is_zip_with_meta(source)  # write_artifact puts it first
    return False


def _check_meta(meta, where: str) -> dict:
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise Int8ArtifactError(f"{where}: not a squeezetime int8 artifact (no format {FORMAT!a} in {META_FILE})")
    version = meta.get("format_version")
    if not isinstance(version, int) or version > FORMAT_VERSION:
        raise Int8ArtifactError(f"{where}: int8 artifact format {version!a} is newer than this squeezetime reads "
                                f"({FORMAT_VERSION}); upgrade squeezetime")
    if meta.get("engine") != "openvino":
        raise Int8ArtifactError(f"{where}: unknown int8 engine {meta.get('engine')!a}")
    names = meta.get("class_names")
    if not isinstance(names, list) or not names or not all(isinstance(n, str) for n in names):
        raise Int8ArtifactError(f"{where}: {META_FILE} has no list of class names")
    try:
        DataConfig.from_dict(meta["data_config"])
    except Exception as e:  # noqa: BLE001 - any malformed config is the file's fault
        raise Int8ArtifactError(f"{where}: {META_FILE} has no valid data_config ({type(e).__name__}: {e})") from e
    return meta


def read_artifact(source) -> Int8Artifact:
    """Path or bytes -> ``Int8Artifact``; ``Int8ArtifactError`` naming the problem for anything else."""
    where = "<bytes>" if isinstance(source, (bytes, bytearray)) else os.fspath(source)
    try:
        with zipfile.ZipFile(io.BytesIO(source) if isinstance(source, (bytes, bytearray)) else source) as z:
            names = set(z.namelist())
            missing = {META_FILE, XML_FILE, BIN_FILE} - names
            if missing:
                raise Int8ArtifactError(f"{where}: not a squeezetime int8 artifact (missing {sorted(missing)})")
            if z.getinfo(META_FILE).file_size > MAX_META_BYTES:
                raise Int8ArtifactError(f"{where}: {META_FILE} is implausibly large")
            meta = _check_meta(json.loads(z.read(META_FILE).decode("utf-8")), where)
            return Int8Artifact(meta, z.read(XML_FILE), z.read(BIN_FILE))
    except Int8ArtifactError:
        raise
    except FileNotFoundError as e:
        raise Int8ArtifactError(f"{where}: no such file") from e
    except (zipfile.BadZipFile, zipfile.LargeZipFile, EOFError, OSError, UnicodeDecodeError, ValueError) as e:
        raise Int8ArtifactError(f"{where}: unreadable int8 artifact ({type(e).__name__}: {e})") from e


def write_artifact(path: str | os.PathLike, meta: dict, xml: bytes, weights: bytes) -> str:
    """Write the zip atomically (a partial file never carries the final name)."""
    meta = _check_meta({"format": FORMAT, "format_version": FORMAT_VERSION, "engine": "openvino", **meta},
                       os.fspath(path))
    path = os.fspath(path)
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    partial = path + ".partial"
    with zipfile.ZipFile(partial, "w", compression=zipfile.ZIP_DEFLATED) as z:
        z.writestr(META_FILE, json.dumps(meta, indent=1, default=str))
        z.writestr(XML_FILE, xml)
        z.writestr(BIN_FILE, weights)
    os.replace(partial, path)
    return path


def openvino_core():
    """``openvino.Core`` or an error that says how to install it (a backend error, raised by the caller)."""
    try:
        import openvino as ov
    except ImportError as e:
        raise ImportError("the int8 backend needs OpenVINO: pip install 'squeezetime[int8]'") from e
    return ov, ov.Core()


def compile_ir(xml: bytes, weights: bytes, threads: int | None = None):
    """IR bytes -> OpenVINO ``CompiledModel`` on the CPU. The non-quantised parts stay float32
    (``INFERENCE_PRECISION_HINT=f32``) so a CPU with bf16 gives the numbers the accuracy gate measured."""
    ov, core = openvino_core()
    try:
        model = core.read_model(model=xml.decode("utf-8"),
                                weights=ov.Tensor(np.frombuffer(weights, dtype=np.uint8)))
    except (RuntimeError, UnicodeDecodeError) as e:
        raise Int8ArtifactError(f"the artifact's OpenVINO IR is unreadable: {str(e).splitlines()[0][:300]}") from e
    config = {"PERFORMANCE_HINT": "LATENCY", "INFERENCE_PRECISION_HINT": "f32",
              "INFERENCE_NUM_THREADS": int(threads or torch.get_num_threads())}
    return core.compile_model(model, "CPU", config)


class Int8Backend:
    """The quantised network of an artifact behind the ``Backend`` interface (CPU only)."""

    def __init__(self, artifact: Int8Artifact, threads: int | None = None):
        self.name, self.device, self.dtype = "int8", torch.device("cpu"), torch.int8
        self.compiled = compile_ir(artifact.xml, artifact.weights, threads)
        self.request = self.compiled.create_infer_request()
        self.lock = threading.Lock()  # one infer request: calls from several threads take turns

    def logits(self, clips: Tensor) -> Tensor:
        x = np.ascontiguousarray(clips.cpu().numpy(), dtype=np.uint8)
        with self.lock:
            self.request.infer({0: x})
            return torch.from_numpy(self.request.get_tensor(OUTPUT).data.astype(np.float32, copy=True))

    def __repr__(self) -> str:
        return "Int8Backend(openvino, cpu, int8)"


__all__ = ["BIN_FILE", "FORMAT", "FORMAT_VERSION", "Int8Artifact", "Int8ArtifactError", "Int8Backend", "META_FILE",
           "SUFFIX", "XML_FILE", "compile_ir", "is_int8_artifact", "read_artifact", "write_artifact"]
