"""TorchServe deployment: handler, ``.mar`` builder, server start/stop, REST and gRPC clients.

Nothing here imports TorchServe at package import; ``handler`` needs ``ts`` (it runs in the worker).
"""
from .archive import DEFAULT_MODEL_NAME, ArchiveOptions, archive_model_name, build_archive

__all__ = ["ArchiveOptions", "DEFAULT_MODEL_NAME", "archive_model_name", "build_archive"]
