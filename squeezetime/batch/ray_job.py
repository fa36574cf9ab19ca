"""``squeezetime batch --ray``: the batch job as a Ray Data pipeline (needs the ``[ray]`` extra).

    paths ─ from_items ─▶ map(read bytes + decode)      CPU tasks, anywhere in the cluster
                       ─▶ map_batches(ClassifyVideos)   an actor pool, one Classifier (and GPU, if any) per actor
                       ─▶ driver: ResultsFile.write     the same lines as the local run, so resume works

Decoding stays in its own CPU tasks: their memory request (``decode_memory``) differs from the actors', which
keeps Ray Data from fusing the decode map into the actor stage (it fuses stages whose resources match), where
decoding would again stand in front of the network in each actor.
Files are read by path inside the decode task (not ``read_binary_files``) so that one unreadable file becomes
one error line instead of failing the dataset; the paths must be readable on every node (shared storage).
"""
from __future__ import annotations

import json
import logging
import os
import sys

import numpy as np

from ..classifier import Classifier
from ..errors import InputError, SqueezeTimeError
from .local import stop_on_sigterm
from .results import ResultsFile, Summary, error_record, prediction_record
from .spec import ModelSpec

LOCAL = "local"  # --ray without an address: start a Ray instance on this machine


def read_and_decode(row: dict, decoder: Classifier, views: str | None) -> dict:
    """{"path"} -> {"path", "clips" (uint8, V clips; 0 on error), "error" ("" when decoded)}."""
    path = row["path"]
    d = decoder.data_config
    empty = np.zeros((0, d.num_frames, d.crop_size, d.crop_size, 3), np.uint8)
    try:
        with open(path, "rb") as f:
            data = f.read()
        if not data:
            return {"path": path, "clips": empty, "error": f"{path}: empty file (0 bytes)"}
        return {"path": path, "clips": decoder.clips(data, views), "error": ""}
    except (SqueezeTimeError, OSError) as e:
        return {"path": path, "clips": empty, "error": error_record(path, e)["error"]}


class ClassifyVideos:
    """An actor of the pool: loads one Classifier (on its GPU when Ray gave it one) and classifies batches."""

    def __init__(self, spec: ModelSpec, topk: int):
        import ray

        self.classifier = spec.load(device="cuda" if ray.get_gpu_ids() else None)
        self.topk = topk

    def __call__(self, batch: dict) -> dict:
        ok = [i for i, error in enumerate(batch["error"]) if not error]
        tops = self.classifier.classify_many([batch["clips"][i] for i in ok], topk=self.topk, errors="return")
        records = [{"path": str(p), "error": str(e)} for p, e in zip(batch["path"], batch["error"])]
        for i, top in zip(ok, tops):
            path = str(batch["path"][i])
            records[i] = error_record(path, top) if isinstance(top, SqueezeTimeError) else prediction_record(path, top)
        return {"line": np.array([json.dumps(r, ensure_ascii=False) for r in records], dtype=object)}


def connect(address: str | None) -> None:
    """Join the cluster at ``address``, or start a quiet local one (no dashboard, no usage stats)."""
    import ray

    if address in (None, LOCAL):
        os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
        ray.init(include_dashboard=False, logging_level="WARNING", log_to_driver=True)
    else:
        try:
            ray.init(address=address, logging_level="WARNING")
        except (ConnectionError, RuntimeError, ValueError) as e:
            raise InputError(f"cannot join the Ray cluster at {address}: {e}") from e


def decode_memory(decoder: Classifier, views: str | None) -> int:
    """Bytes to reserve per decode task (a scheduling estimate): the clips a few times over, plus the worker
    process itself (with torch and PyAV imported Ray measured ~260 MB)."""
    d = decoder.data_config
    clips = d.clips_per_video(views) * d.num_frames * d.crop_size ** 2 * 3
    return 4 * clips + 384 * 2**20


def quiet_ray_data() -> None:
    """Our progress bar counts videos through both stages; Ray Data's bars and INFO lines would interleave."""
    from ray.data import DataContext

    DataContext.get_current().enable_progress_bars = False
    logging.getLogger("ray.data").setLevel(logging.WARNING)


def run_ray(spec: ModelSpec, paths: list[str], out: ResultsFile, *, address: str | None = None,
            views: str | None = None, topk: int = 5, actors: int | None = None, decoders: int | None = None,
            batch_videos: int | None = None,
            decode_cpus: float = 1.0, actor_cpus: float = 1.0, progress: bool = True) -> Summary:
    """Classify ``paths`` on a Ray cluster into ``out``; Ctrl-C stops it with a valid file.

    actors: size of the classifier pool (default: one per GPU, else 1). decoders: most decode tasks at once. batch_videos: videos per actor call
    (default: enough for one ``spec.batch_size`` backend batch).
    """
    import ray
    from ray.data import ActorPoolStrategy, TaskPoolStrategy
    from tqdm import tqdm

    decoder = spec.decoder()
    per_video = decoder.data_config.clips_per_video(views)
    batch_videos = batch_videos or max(1, -(-spec.batch_size // per_video))
    summary = Summary()
    connect(address)
    bar = tqdm(total=len(paths), desc="batch (ray)", unit="video", file=sys.stderr, disable=not progress,
               dynamic_ncols=True)
    try:
        with stop_on_sigterm():
            quiet_ray_data()
            gpus = int(ray.cluster_resources().get("GPU", 0))
            dataset = (ray.data.from_items([{"path": p} for p in paths])
                       .map(read_and_decode, fn_kwargs={"decoder": decoder, "views": views},
                            compute=TaskPoolStrategy(size=decoders), num_cpus=decode_cpus,
                            memory=decode_memory(decoder, views))
                       .map_batches(ClassifyVideos, fn_constructor_kwargs={"spec": spec, "topk": topk},
                                    batch_size=batch_videos, batch_format="numpy",
                                    compute=ActorPoolStrategy(size=actors or max(1, gpus)),
                                    num_cpus=actor_cpus, num_gpus=1 if gpus else 0))
            for row in dataset.iter_rows():
                _write(json.loads(row["line"]), out, summary, bar)
    except KeyboardInterrupt:
        summary.interrupted = True
    finally:
        bar.close()
        ray.shutdown()
    return summary


def _write(record: dict, out: ResultsFile, summary: Summary, bar) -> None:
    out.write(record)
    if "error" in record:
        summary.failed += 1
    else:
        summary.classified += 1
    bar.update()
    bar.set_postfix(failed=summary.failed, refresh=False)
