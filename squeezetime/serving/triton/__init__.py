"""Triton Inference Server: model repository, server launcher and gRPC client for SqueezeTime.

    from squeezetime.serving.triton import TritonServer, TritonClient, write_repository

    repo = write_repository("repo", squeezetime.demo_model())
    with TritonServer(repo) as server:
        TritonClient(server.grpc_url).classify("video.mp4", views="1x1", topk=5)

``tritonclient`` is imported only by the client; the launcher needs only a ``tritonserver`` binary.
"""
from .repository import CLIP_MODEL, MODELS, VIDEO_MODEL, RepoOptions, parse_config, write_repository
from ..ports import free_port
from .install import TritonServerError, find_tritonserver
from .server import TritonServer
from .shm import remove_shm_regions


def __getattr__(name):
    if name in ("TritonClient", "TritonRequestError", "TritonUnavailable"):
        from . import client
        return getattr(client, name)
    raise AttributeError(name)


__all__ = ["CLIP_MODEL", "MODELS", "RepoOptions", "TritonClient", "TritonRequestError", "TritonServer",
           "TritonServerError", "TritonUnavailable", "VIDEO_MODEL", "find_tritonserver", "free_port",
           "parse_config", "remove_shm_regions", "write_repository"]
