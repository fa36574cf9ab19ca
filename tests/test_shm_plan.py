"""/dev/shm needs of a Triton repository are known before the server starts: the plan follows the repository's
own limits, and a host whose /dev/shm cannot hold the worst case is refused with the settings that fix it."""
from __future__ import annotations

import subprocess
import sys

import pytest

from support.triton import model_for_tests, require_tritonserver

from squeezetime.serving.triton import RepoOptions, TritonServer, TritonServerError, write_repository
from squeezetime.serving.triton.shm import MiB, ShmPlan, plan


@pytest.fixture(scope="module")
def model():
    return model_for_tests()


def needs(tmp_path, model, **options) -> dict:
    repo = write_repository(tmp_path / "_".join(f"{k}{v}" for k, v in options.items()), model,
                            options=RepoOptions(**options))
    return {m.name: m for m in plan(repo).models}


def test_video_need_follows_max_video_bytes_and_instances(tmp_path, model):
    small = needs(tmp_path, model, max_video_bytes=64 * MiB, video_instances=1)
    big = needs(tmp_path, model, max_video_bytes=256 * MiB, video_instances=3)
    # videos held per instance: max_in_flight (2 x 4 decode threads) + one batch of 8 being received
    assert small["squeezetime_video"].bytes_per_instance >= 16 * 64 * MiB
    assert big["squeezetime_video"].bytes_per_instance >= 16 * 256 * MiB
    assert big["squeezetime_video"].instances == 3
    ratio = big["squeezetime_video"].bytes_per_instance / small["squeezetime_video"].bytes_per_instance
    assert 3.5 < ratio <= 4.0
    # the clip model's region holds one full batch of uint8 clips: 8 x 16 x 224 x 224 x 3 bytes
    assert small["squeezetime"].bytes_per_instance >= 8 * 16 * 224 * 224 * 3


def test_a_small_dev_shm_is_named_with_its_remedies(tmp_path, model):
    repo = write_repository(tmp_path / "repo", model)
    full = plan(repo)
    assert full.available is not None and full.total > 0
    docker_default = ShmPlan(full.models, available=64 * MiB)
    message = docker_default.problem()
    assert message and "--shm-size" in message and "--max-video-bytes" in message
    assert ShmPlan(full.models, available=full.total).problem() is None


def test_server_refuses_before_starting_anything(tmp_path, model):
    require_tritonserver()
    repo = write_repository(tmp_path / "repo", model, options=RepoOptions(max_video_bytes=2**42))  # 4 TiB videos
    with pytest.raises(TritonServerError, match="/dev/shm is too small"):
        TritonServer(repo).start()
    with pytest.raises(TritonServerError, match="shm_check"):
        TritonServer(repo, shm_check="sometimes")
    done = subprocess.run([sys.executable, "-m", "squeezetime.cli", "serve", "--repo", str(repo), "--grpc-port", "0",
                           "--http-port", "0", "--metrics-port", "0"], capture_output=True, text=True, timeout=120)
    assert done.returncode == 2
    assert "/dev/shm is too small" in done.stderr and "--shm-check warn" in done.stderr


def test_gpu_instances_count_once_per_listed_gpu(tmp_path, model):
    """KIND_GPU places `count` instances on each GPU: each one holds its own region."""
    gpu = needs(tmp_path, model, kind="gpu", gpus=(0, 1, 3), instances=2, video_instances=1)
    assert gpu["squeezetime"].instances == 6 and gpu["squeezetime_video"].instances == 3
