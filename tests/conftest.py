"""Shared fixtures: the read-only reference data beside the repo, generated videos, and the real servers that
several test modules use (tritonserver, TorchServe); the `servers` and `slow` markers. Plain helpers and constants
live in tests/support/."""
from __future__ import annotations

from pathlib import Path

import pytest

from support.reference import REFERENCE
from support.torchserve import BATCH_SIZE, MAX_BATCH_DELAY_MS, require_torchserve


@pytest.fixture(scope="session", autouse=True)
def engine_cache_of_the_session(tmp_path_factory):
    """The onnxruntime/openvino backends' conversions go to a cache of this test session, not ~/.cache: what
    backend="auto" picks depends on what that cache holds (squeezetime.backends.auto)."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("SQUEEZETIME_CACHE", str(tmp_path_factory.mktemp("squeezetime_cache")))
        yield


@pytest.fixture(scope="session")
def reference_dir() -> Path:
    if not (REFERENCE / "cases.json").exists():
        pytest.fail(f"reference fixtures not found at {REFERENCE} (set SQUEEZETIME_SHARED)")
    return REFERENCE


@pytest.fixture(scope="session")
def demo_videos(tmp_path_factory) -> list[tuple[str, str]]:
    """Held-out demo videos, 2 per class, mp4/avi/webm/mkv: [(path, true label)]."""
    from squeezetime.cli.demo import write_demo_videos

    return write_demo_videos(str(tmp_path_factory.mktemp("demo_videos")), per_class=2)


@pytest.fixture(scope="session")
def long_still_video(tmp_path_factory) -> str:
    """Issue 18's upload: an H.264 MP4 of 200,000 identical 64x64 frames (about 3.4 MB; made in about 0.5 s by
    repeating one encoded GOP)."""
    from squeezetime.video.generate import make_still_video

    return make_still_video(tmp_path_factory.mktemp("still") / "still_200k.mp4", frames=200_000)


@pytest.fixture(scope="session")
def demo_model():
    import squeezetime

    return squeezetime.demo_model()


# -- real servers shared by several modules ----------------------------------------------------------------------
# support.triton is imported when used: it imports squeezetime's serving code, which collection does not need.
# Module scope: every module that uses one gets its own server (as when each module imported the fixture), so
# one module's requests never change another's counters or state, and a server is stopped after its module.
@pytest.fixture(scope="module")
def served_model():
    from support.triton import model_for_tests

    return model_for_tests()


@pytest.fixture(scope="module")
def triton(tmp_path_factory, served_model):
    """A real tritonserver on free loopback ports serving the test model; always stopped, shm removed."""
    from support.triton import MAX_VIDEO_BYTES, require_tritonserver, running

    require_tritonserver()
    from squeezetime.serving.triton import RepoOptions, TritonServer, write_repository

    repo = write_repository(tmp_path_factory.mktemp("triton_repo"), served_model,
                            options=RepoOptions(max_batch_size=8, max_queue_delay_us=20000,
                                                max_video_bytes=MAX_VIDEO_BYTES, num_threads=2))
    with running(TritonServer(repo, start_timeout=240)) as server:
        yield server


@pytest.fixture(scope="module")
def torchserve(tmp_path_factory):
    """The demo model archived and served; yields ServerInfo; always stopped (whole process group)."""
    require_torchserve()
    from squeezetime.serving.torchserve import server
    from squeezetime.serving.torchserve.archive import ArchiveOptions, build_archive

    base = tmp_path_factory.mktemp("torchserve")
    store = base / "model_store"
    build_archive(store, options=ArchiveOptions(batch_size=BATCH_SIZE, max_batch_delay_ms=MAX_BATCH_DELAY_MS,
                                                workers=1, threads=2))
    run_dir = base / "run"
    info = None
    try:
        info = server.start(store, run_dir=run_dir, ports=server.free_ports(), timeout=240)
        yield info
    finally:
        server.stop(run_dir, timeout=60)


@pytest.fixture(scope="session")
def grpc_stub_dir(tmp_path_factory):
    """Stubs generated at test time from the protos inside TorchServe's jar (never committed)."""
    require_torchserve()
    from squeezetime.serving.torchserve.grpc_stubs import generate

    return generate(tmp_path_factory.mktemp("torchserve_grpc"))


# -- the `servers` marker: tests that start a real tritonserver, TorchServe or `squeezetime serve` -------------------
# `pytest -m "not servers"` runs the fast unit tests alone. A test is marked when its own source or that of a fixture
# it uses (directly or not) starts a server; modules may also mark themselves (pytestmark).
SERVER_STARTS = ("TritonServer(", "running(", "server.start(", "ts_server.start(", '"--via", "triton"', '"serve",',
                 '"torchserve", "start"', "require_tritonserver()")


def pytest_configure(config):
    config.addinivalue_line("markers", "servers: starts a real server (tritonserver, TorchServe); slow: "
                                       "deselect with -m 'not servers'")
    config.addinivalue_line("markers", "slow: builds, installs, exports, converts or scores hundreds of clips "
                                       "(seconds to minutes each); -m 'not servers and not slow' runs the fast "
                                       "unit tests alone")


def _starts_a_server(function) -> bool:
    import inspect

    try:
        source = inspect.getsource(function)
    except (OSError, TypeError):
        return False
    return any(start in source for start in SERVER_STARTS)


def pytest_collection_modifyitems(config, items):
    import pytest as _pytest

    for item in items:
        fixtures = getattr(item, "_fixtureinfo", None)
        definitions = fixtures.name2fixturedefs.values() if fixtures is not None else []
        functions = [getattr(item, "function", None)] + [d[-1].func for d in definitions if d]
        if any(_starts_a_server(f) for f in functions if f is not None):
            item.add_marker(_pytest.mark.servers)
