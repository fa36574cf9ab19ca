"""The local run: worker processes decode, the main process runs the network on batches of their clips.

Decoding (PyAV, resizing) and the network take turns in a plain loop; here they overlap: while the main process
classifies one batch, the workers already decode the next videos. At most ``max_in_flight`` videos are being
decoded or waiting as clips, which bounds memory (a 10x3 video is 72 MB of clips).
"""
from __future__ import annotations

import math
import multiprocessing
import signal
import sys
import threading
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from typing import Iterable

import numpy as np

from ..classifier import Classifier
from ..errors import SqueezeTimeError
from .spec import decoder_of
from .results import ResultsFile, Summary, error_record, prediction_record

_decoder: Classifier | None = None  # per worker process: a Classifier without a network, for clips()


def _start_worker(decoder: Classifier) -> None:
    """Workers leave Ctrl-C to the main process (which stops them) and decode on one thread each."""
    global _decoder
    import torch

    signal.signal(signal.SIGINT, signal.SIG_IGN)
    torch.set_num_threads(1)
    _decoder = decoder


def _decode(path: str, views: str | None) -> tuple[str, np.ndarray | None, str | None]:
    """(path, uint8 clips, None) or (path, None, error line text)."""
    try:
        return path, _decoder.clips(path, views), None
    except (SqueezeTimeError, OSError) as e:
        return path, None, error_record(path, e)["error"]


def run_local(classifier: Classifier, paths: Iterable[str], out: ResultsFile, *, views: str | None = None,
              topk: int = 5, workers: int = 2, progress: bool = True, max_in_flight: int | None = None) -> Summary:
    """Classify ``paths`` into ``out`` (one line each, in the order they finish); Ctrl-C/SIGTERM stop cleanly.

    ``classifier.batch_size`` clips go through the network per call; ``max_in_flight`` (default: one batch of
    videos plus two per worker) bounds the videos decoded but not yet written.
    """
    from tqdm import tqdm

    paths = list(paths)
    per_video = classifier.data_config.clips_per_video(views)
    batch_videos = max(1, math.ceil(classifier.batch_size / per_video))
    limit = max_in_flight or batch_videos + 2 * workers
    summary = Summary()
    bar = tqdm(total=len(paths), desc="batch", unit="video", file=sys.stderr, disable=not progress,
               dynamic_ncols=True)
    pool = ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn"),
                               initializer=_start_worker, initargs=(decoder_of(classifier),))
    try:
        with stop_on_sigterm():
            _pipeline(classifier, iter(paths), pool, out, summary, bar, views, topk, batch_videos, limit)
    except KeyboardInterrupt:
        summary.interrupted = True
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
        bar.close()
    return summary


def _pipeline(classifier, todo, pool, out, summary, bar, views, topk, batch_videos, limit) -> None:
    in_flight: set[Future] = set()
    decoded: list[tuple[str, np.ndarray]] = []
    exhausted = False
    while True:
        while not exhausted and len(in_flight) + len(decoded) < limit:
            path = next(todo, None)
            if path is None:
                exhausted = True
            else:
                in_flight.add(pool.submit(_decode, path, views))
        if not in_flight and not decoded:
            return
        if in_flight and len(decoded) < batch_videos:  # the batch is not full yet: wait for a decoder
            done, in_flight = wait(in_flight, return_when=FIRST_COMPLETED)
            for future in done:
                path, clips, error = _result(future, done | in_flight)
                if error is None:
                    decoded.append((path, clips))
                else:
                    out.write({"path": path, "error": error})
                    summary.failed += 1
                    bar.update()
            continue
        batch, decoded = decoded[:batch_videos], decoded[batch_videos:]
        _classify(classifier, batch, out, summary, bar, topk)


def _result(future: Future, in_flight: set[Future]):
    try:
        return future.result()
    except BrokenProcessPool as e:  # a decoder died outright (a signal in FFmpeg, the OOM killer)
        raise SqueezeTimeError(f"a decoding process died while {len(in_flight)} videos were being decoded; the "
                               "results so far are kept, a rerun resumes (it may meet the same video again)") from e


def _classify(classifier, batch, out, summary, bar, topk) -> None:
    """The network on one batch of decoded videos (their clips share backend calls), one line each."""
    results = classifier.classify_many([clips for _, clips in batch], topk=topk, errors="return")
    for (path, _), top in zip(batch, results):
        if isinstance(top, SqueezeTimeError):
            out.write(error_record(path, top))
            summary.failed += 1
        else:
            out.write(prediction_record(path, top))
            summary.classified += 1
    bar.update(len(batch))
    bar.set_postfix(failed=summary.failed, refresh=False)


class stop_on_sigterm:
    """SIGTERM stops the run like Ctrl-C (KeyboardInterrupt), so the results file is closed properly."""

    def __enter__(self):
        self.previous = None
        if threading.current_thread() is threading.main_thread():  # signals can only be caught there
            self.previous = signal.signal(signal.SIGTERM, self._raise)
        return self

    @staticmethod
    def _raise(signum, frame):
        raise KeyboardInterrupt

    def __exit__(self, *exc):
        if self.previous is not None:
            signal.signal(signal.SIGTERM, self.previous)
