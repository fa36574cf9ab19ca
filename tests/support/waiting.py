"""Waiting for something another process does (a log line flushed, a process gone): a hang guard, not a timing."""
from __future__ import annotations

import time


def wait_for(predicate, timeout: float, interval: float = 0.2):
    """predicate()'s first truthy value within ``timeout`` seconds, else its last value."""
    until = time.monotonic() + timeout
    while True:
        value = predicate()
        if value or time.monotonic() >= until:
            return value
        time.sleep(interval)
