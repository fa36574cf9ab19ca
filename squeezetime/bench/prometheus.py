"""Reading a server's Prometheus metrics endpoint from the client side: benchmarks and tests order their steps by
the counters the server reports (a request reached the model, a decode started) instead of by sleeps."""
from __future__ import annotations

import time


def scrape(url: str) -> dict[str, float]:
    """Every sample of the text exposition at ``url``: ``{'name{labels}': value}``."""
    import urllib.request

    with urllib.request.urlopen(url, timeout=30) as r:
        text = r.read().decode()
    return {line.rsplit(" ", 1)[0]: float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
            if line and not line.startswith("#")}


def wait_for_metric(url: str, key: str, at_least: float, timeout: float = 120.0,
                    poll: float = 0.05) -> dict[str, float]:
    """Scrape until ``key`` reaches ``at_least``; the samples of that scrape. A wait for an event the server
    reports, not a timing: the timeout is only there so that a broken server fails (TimeoutError)."""
    deadline = time.monotonic() + timeout
    while True:
        metrics = scrape(url)
        if metrics.get(key, 0) >= at_least:
            return metrics
        if time.monotonic() >= deadline:
            raise TimeoutError(f"{key} never reached {at_least}: {metrics.get(key)}")
        time.sleep(poll)


__all__ = ["scrape", "wait_for_metric"]
