"""gRPC stubs for TorchServe's inference/management APIs, generated from the protos inside its jar.

TorchServe ships no Python stubs; its ``ts/frontend/model-server.jar`` carries ``inference.proto``,
``management.proto`` and ``google/rpc/status.proto``. ``generate(out_dir)`` extracts them and runs
grpcio-tools' protoc (``make`` does it into ``build/torchserve_grpc``; ``load()`` does it on first use
into a cache directory). Nothing generated is committed.
"""
from __future__ import annotations

import importlib
import os
import sys
import tempfile
import zipfile
from pathlib import Path

PROTOS = ("inference.proto", "management.proto", "google/rpc/status.proto")
MODULES = ("inference_pb2", "inference_pb2_grpc", "management_pb2", "management_pb2_grpc")


def torchserve_jar() -> Path:
    import ts

    jar = Path(ts.__file__).parent / "frontend" / "model-server.jar"
    if not jar.exists():
        raise FileNotFoundError(f"{jar} not found (is torchserve installed?)")
    return jar


def default_dir() -> Path:
    import ts.version

    base = os.environ.get("SQUEEZETIME_TORCHSERVE_GRPC_DIR")
    if base:
        return Path(base)
    return Path.home() / ".cache" / "squeezetime" / f"torchserve_grpc-{ts.version.__version__}"


def generate(out_dir: str | os.PathLike) -> Path:
    """Extract the protos from TorchServe's jar and write ``*_pb2.py``/``*_pb2_grpc.py`` into ``out_dir``."""
    from grpc_tools import protoc

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="ts-protos-") as tmp, zipfile.ZipFile(torchserve_jar()) as jar:
        names = set(jar.namelist())
        for proto in PROTOS:
            member = proto if proto in names else f"proto/{proto}"
            if member not in names:
                raise FileNotFoundError(f"{proto} not in {torchserve_jar()}")
            target = Path(tmp) / proto
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(jar.read(member))
        include = Path(protoc.__file__).parent / "_proto"  # google/protobuf/*.proto (empty, wrappers...)
        args = ["grpc_tools.protoc", f"-I{tmp}", f"-I{include}", f"--python_out={out}",
                f"--grpc_python_out={out}", *PROTOS]
        if protoc.main(args) != 0:
            raise RuntimeError(f"protoc failed for {PROTOS}")
    return out


def load(stub_dir: str | os.PathLike | None = None):
    """Import (generating first if needed) and return ``(inference_pb2, inference_pb2_grpc)``."""
    path = Path(stub_dir) if stub_dir else default_dir()
    if not (path / "inference_pb2_grpc.py").exists():
        generate(path)
    if str(path) not in sys.path:
        sys.path.insert(0, str(path))
    return importlib.import_module("inference_pb2"), importlib.import_module("inference_pb2_grpc")


def main(argv: list[str] | None = None) -> int:
    out = generate((argv or sys.argv[1:] or ["build/torchserve_grpc"])[0])
    print(f"gRPC stubs in {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
