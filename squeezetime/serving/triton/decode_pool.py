"""Where the video and timeline models do their work off Triton's request path: ``DecodePool`` (threads that
take the cheapest waiting decode first), ``decode_cost`` (its estimate) and ``CancelCheck`` (has the client
cancelled? asked of the response sender, at most every few tens of milliseconds)."""
from __future__ import annotations

import itertools
import queue
import threading
import time
from concurrent.futures import Future


class DecodePool:
    """``threads`` worker threads that take the cheapest waiting job first (``cost``: the caller's estimate), so
    that a cheap video waits only for a free thread, never behind a queue of expensive ones. Jobs return
    ``concurrent.futures.Future`` objects (``asyncio.wrap_future`` them on an event loop)."""

    def __init__(self, threads: int, name: str = "squeezetime-decode"):
        self._queue: queue.PriorityQueue = queue.PriorityQueue()
        self._order = itertools.count()
        self._closed = False
        self._threads = [threading.Thread(target=self._work, name=f"{name}-{i}", daemon=True) for i in range(threads)]
        for thread in self._threads:
            thread.start()

    def submit(self, cost: float, fn, *args) -> Future:
        if self._closed:
            raise RuntimeError("the decode pool is shut down")
        future: Future = Future()
        self._queue.put((float(cost), next(self._order), future, fn, args))
        return future

    def _work(self) -> None:
        while True:
            _, _, future, fn, args = self._queue.get()
            if future is None:
                return
            if not future.set_running_or_notify_cancel():
                continue
            try:
                result = fn(*args)
            except BaseException as e:  # noqa: BLE001 - the job's own outcome
                future.set_exception(e)
            else:
                future.set_result(result)

    def shutdown(self, timeout: float = 10.0) -> None:
        """Cancel waiting jobs, let running ones finish (up to ``timeout`` s in all), stop the threads."""
        self._closed = True
        while True:
            try:
                _, _, future, _, _ = self._queue.get_nowait()
            except queue.Empty:
                break
            if future is not None:
                future.cancel()
        for _ in self._threads:
            self._queue.put((float("-inf"), next(self._order), None, None, ()))
        deadline = time.monotonic() + timeout
        for thread in self._threads:
            thread.join(timeout=max(0.0, deadline - time.monotonic()))


def decode_cost(video: bytes, view) -> float:
    """A decode's cost estimate for ``DecodePool``: encoded bytes (frames x pixels, roughly) x clips kept."""
    return float(len(video)) * view.num_clips * (3 if view.three_crop else 1)


class CancelCheck:
    """``should_stop`` for a decode: asks the response sender whether the client cancelled, at most every
    ``every`` seconds (each question is a round trip to the server)."""

    def __init__(self, sender, every: float = 0.05):
        self.sender, self.every = sender, every
        self.cancelled, self._last = False, float("-inf")

    def __call__(self) -> bool:
        if not self.cancelled and time.monotonic() - self._last >= self.every:
            self._last = time.monotonic()
            try:
                self.cancelled = bool(self.sender.is_cancelled())
            except Exception:  # noqa: BLE001 - an older python backend without is_cancelled
                self.every = float("inf")
        return self.cancelled


__all__ = ["CancelCheck", "DecodePool", "decode_cost"]
