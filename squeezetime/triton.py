"""``squeezetime.triton.TritonClient``: the gRPC client of the SqueezeTime Triton models.

    from squeezetime.triton import TritonClient
    TritonClient("127.0.0.1:8001").classify("video.mp4", views="1x1", topk=5)

The launcher and the repository writer are in ``squeezetime.serving.triton``.
"""
from .serving.triton.client import ClipScores, TritonClient, TritonRequestError, TritonUnavailable

__all__ = ["ClipScores", "TritonClient", "TritonRequestError", "TritonUnavailable"]
