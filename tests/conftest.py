"""Shared fixtures: the read-only reference data beside the repo, and generated videos."""
from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SHARED = Path(os.environ.get("SQUEEZETIME_SHARED", ROOT.parent / "shared"))
REFERENCE = SHARED / "reference"


def reference_cases() -> dict:
    path = REFERENCE / "cases.json"
    return json.loads(path.read_text()) if path.exists() else {}


def relative_l2(actual, expected) -> float:
    return float((actual.double() - expected).norm() / expected.norm())


def centred_relative_l2(actual, expected) -> float:
    a = actual.double() - actual.double().mean(0)
    e = expected - expected.mean(0)
    return float((a - e).norm() / e.norm())


# Tolerances of ../shared/reference/README.md: a float32 path is right below both.
GOLDEN_REL_L2 = 1e-5
GOLDEN_CENTRED_REL_L2 = 1e-3


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
