"""Helpers of the TorchServe tests: the settings of the test server (started by the ``torchserve`` fixture in
conftest.py), the install check, concurrent calls and a headers-only upload."""
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
