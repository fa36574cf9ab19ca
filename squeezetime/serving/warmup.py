"""What both servers do before they report ready, so that the first request is not the slow one."""
from __future__ import annotations

import threading
from concurrent.futures import Future
from typing import Callable


def in_every_thread(submit: Callable[[Callable], Future], threads: int, fn: Callable, timeout: float = 120.0) -> None:
    """Run ``fn`` once in each of a pool's ``threads`` threads (``submit`` hands a job to the pool): a barrier holds
    each job until every thread has one, so no thread runs two while another runs none."""
    barrier = threading.Barrier(threads)

    def job():
        try:
            barrier.wait(timeout=30)
        except threading.BrokenBarrierError:
            pass
        return fn()

    for future in [submit(job) for _ in range(threads)]:
        future.result(timeout=timeout)


__all__ = ["in_every_thread"]
