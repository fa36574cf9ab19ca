"""Fixtures for the TorchServe tests: a real server on free loopback ports with its own directories."""
from __future__ import annotations

import shutil
import socket
import threading
from concurrent.futures import ThreadPoolExecutor

import pytest

BATCH_SIZE = 4
MAX_BATCH_DELAY_MS = 300  # generous: concurrent requests from a loaded 2-core machine still meet in one batch


def require_torchserve() -> None:
    try:
        import model_archiver  # noqa: F401
        import ts  # noqa: F401
    except ImportError as e:
        pytest.fail(f"TorchServe is not installed in this environment ({e}): pip install -r "
                    "requirements/main/torchserve.txt")
    if shutil.which("java") is None:
        pytest.fail("TorchServe needs Java 17 on PATH (apt-get install openjdk-17-jre-headless)")


@pytest.fixture(scope="session")
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


def concurrently(fns, timeout: float = 300.0) -> list:
    """Run the callables at the same moment (barrier), return their results in order."""
    barrier = threading.Barrier(len(fns))

    def run(fn):
        barrier.wait(timeout=30)
        return fn()

    with ThreadPoolExecutor(len(fns)) as pool:
        futures = [pool.submit(run, fn) for fn in fns]
        return [f.result(timeout=timeout) for f in futures]


def post_headers_only(host: str, port: int, path: str, content_length: int, timeout: float = 30.0) -> tuple[int, str]:
    """Announce a body of ``content_length`` bytes with ``Expect: 100-continue`` (what curl does for big
    uploads) and return the server's first status line: 100 (go on) or its refusal (413)."""
    with socket.create_connection((host, port), timeout=timeout) as s:
        s.sendall((f"POST {path} HTTP/1.1\r\nHost: {host}:{port}\r\nContent-Type: application/octet-stream\r\n"
                   f"Content-Length: {content_length}\r\nExpect: 100-continue\r\n\r\n").encode())
        data = b""
        while b"\r\n" not in data:
            chunk = s.recv(4096)
            if not chunk:
                break
            data += chunk
    line = data.split(b"\r\n", 1)[0].decode("latin-1")
    parts = line.split(" ", 2)
    return int(parts[1]), line
