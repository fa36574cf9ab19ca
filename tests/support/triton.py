"""Helpers of the Triton tests: the model they serve, a real tritonserver (``running``; the shared ``triton``
fixture in conftest.py uses it), process/shm checks, raw video requests."""
from __future__ import annotations

import contextlib
import glob
import os

import pytest

from squeezetime.serving.triton.shm import SHM_PREFIX

MAX_VIDEO_BYTES = 4_000_000  # small limit so that the "oversized upload" case stays cheap; over issue 18's 3.4 MB still video


def model_for_tests():
    """The demo model when its checkpoint is there (it is shipped), else a random one of the same shape."""
    import squeezetime
    from squeezetime.synthetic import CLASSES
    from squeezetime.synthetic.demo import demo_checkpoint_path

    if os.path.exists(demo_checkpoint_path()):
        return squeezetime.demo_model()
    import torch
    torch.manual_seed(0)
    return squeezetime.create_model("k400", depth=50, widen_factor=0.125, num_classes=len(CLASSES),
                                    class_names=list(CLASSES)).eval()


def tritonserver_available() -> bool:
    from squeezetime.serving.triton import TritonServerError, find_tritonserver
    try:
        find_tritonserver()
        return True
    except TritonServerError:
        return False


def require_tritonserver():
    if not tritonserver_available():
        pytest.fail("no tritonserver: run `make triton-setup` (fills .venv-triton with nvidia-pytriton)")


def server_processes(server) -> list[int]:
    """Live PIDs still in the server's process group (its python backend stubs included)."""
    from squeezetime.serving.supervisor import group_pids
    return group_pids(server.pgid) if server.pgid else []


def shm_regions(prefix: str = SHM_PREFIX) -> list[str]:
    return glob.glob(f"/dev/shm/{prefix}*")


def video_inputs(data, views=None, topk=None) -> list:
    """Raw ``squeezetime_video`` inputs (views as given: str or any bytes), for requests a client would not send."""
    import numpy as np
    import tritonclient.grpc as grpcclient

    inputs = [grpcclient.InferInput("VIDEO", [1, 1], "BYTES")]
    inputs[0].set_data_from_numpy(np.array([[data]], dtype=np.object_))
    if views is not None:
        inputs.append(grpcclient.InferInput("VIEWS", [1, 1], "BYTES"))
        inputs[-1].set_data_from_numpy(np.array([[views]], dtype=np.object_))
    if topk is not None:
        inputs.append(grpcclient.InferInput("TOPK", [1, 1], "INT32"))
        inputs[-1].set_data_from_numpy(np.array([[topk]], dtype=np.int32))
    return inputs


@contextlib.contextmanager
def running(server):
    """Start ``server`` (a TritonServer), yield it, always stop it, and check it left no process or shm region."""
    try:
        server.start()
        yield server
    finally:
        server.cleanup()
        assert not server_processes(server), "tritonserver processes left behind"
        assert not shm_regions(server.shm_prefix), "python backend shm regions left behind"
