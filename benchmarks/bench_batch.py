"""Videos/s of ``squeezetime batch``: the local pipeline vs a sequential loop, and Ray Data on 1 and 2 nodes.

    python benchmarks/bench_batch.py --out build/bench_batch [--videos 32] [--rounds 2] [--workers 1] [--no-ray]

- sequential: ``classifier.classify(path)`` for one video after another (what looping ``squeezetime predict``
  does, without its start-up), in this process.
- local: ``run_local`` (decoding in ``--workers`` processes, batched inference here), worker start-up included.
- ray Nn: ``run_ray`` on a real local cluster (``LocalRayCluster``) of N nodes sharing this machine's CPUs
  (1 node x C CPUs, 2 nodes x C/2), driver, actor and task start-up included, cluster start-up not.

sequential and local alternate ``--rounds`` times in one process (their ratio per round is reported, so a
machine that is busier in one moment shows up as spread, not as a bias). Writes ``bench_batch.json`` and
``bench_batch.png`` into ``--out`` and prints the JSON.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def make_corpus(directory: Path, count: int) -> list[str]:
    from squeezetime.cli.demo import write_demo_videos

    per_class = -(-count // 8)
    return [path for path, _ in write_demo_videos(str(directory), per_class=per_class)][:count]


def time_sequential(classifier, paths: list[str]) -> float:
    start = time.perf_counter()
    for path in paths:
        classifier.classify(path, topk=5)
    return time.perf_counter() - start


def time_local(classifier, paths: list[str], workers: int) -> float:
    from squeezetime.batch import ResultsFile, run_local

    with tempfile.TemporaryDirectory() as tmp, ResultsFile(os.path.join(tmp, "r.jsonl")) as out:
        start = time.perf_counter()
        summary = run_local(classifier, paths, out, workers=workers, progress=False)
        elapsed = time.perf_counter() - start
    assert summary.classified == len(paths), summary
    return elapsed


def time_ray(corpus: Path, nodes: int, cpus: int) -> float:
    """One ``run_ray`` on a fresh ``nodes``-node cluster, timed in a fresh driver process (a Ray driver keeps
    the first cluster's auth token for its lifetime)."""
    import subprocess

    from squeezetime.batch.ray_cluster import LocalRayCluster

    cluster = LocalRayCluster(nodes=nodes, cpus_per_node=cpus // nodes).start()
    try:
        done = subprocess.run([sys.executable, __file__, "--time-ray", cluster.address, "--out", str(corpus)],
                              env=cluster.env, capture_output=True, text=True, timeout=900)
        if done.returncode != 0:
            raise RuntimeError(done.stderr[-3000:])
        return float(done.stdout.strip().splitlines()[-1])
    finally:
        left = cluster.stop()
        assert not left, f"Ray processes left running: {left}"


def ray_driver(address: str, corpus: Path) -> None:
    """--time-ray: classify the corpus on the cluster at ``address``; print the seconds ``run_ray`` took."""
    from squeezetime.batch import ModelSpec, ResultsFile, find_videos
    from squeezetime.batch.ray_job import run_ray

    paths = find_videos(str(corpus))
    with tempfile.TemporaryDirectory() as tmp, ResultsFile(os.path.join(tmp, "r.jsonl")) as out:
        start = time.perf_counter()
        summary = run_ray(ModelSpec("demo"), paths, out, address=address, progress=False)
        elapsed = time.perf_counter() - start
    assert summary.classified == len(paths), summary
    print(elapsed)


def draw(result: dict, path: Path) -> None:
    from squeezetime.bench.plot import figure

    names = list(result["videos_per_s"])
    values = [result["videos_per_s"][n] for n in names]
    with figure(path, figsize=(7, 3.6), dpi=120) as (_, ax):
        bars = ax.bar(names, values, color=["#999999", "#1f77b4", "#ff7f0e", "#d62728"][:len(names)])
        ax.bar_label(bars, fmt="%.2f")
        ax.set_ylabel("videos/s (higher is better)")
        ax.set_title(f"squeezetime batch: {result['videos']} demo videos, 1x1, {result['cpus']} CPUs "
                     f"({result['note']})", fontsize=9)


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="build/bench_batch")
    parser.add_argument("--videos", type=int, default=32)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--workers", type=int, default=max(1, (os.cpu_count() or 2) - 1))
    parser.add_argument("--no-ray", action="store_true")
    parser.add_argument("--note", default="", help="e.g. 'machine shared with other jobs'")
    parser.add_argument("--time-ray", metavar="ADDRESS", help=argparse.SUPPRESS)  # the driver of time_ray
    args = parser.parse_args(argv)
    if args.time_ray:
        return ray_driver(args.time_ray, Path(args.out))

    import squeezetime

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    shutil.rmtree(out / "corpus", ignore_errors=True)  # exactly --videos videos, for the Ray driver too
    paths = make_corpus(out / "corpus", args.videos)
    classifier = squeezetime.load(squeezetime.DEMO)
    classifier.classify(paths[0])  # warm-up: first-call allocations are not the loop's
    rounds = []
    for i in range(args.rounds):
        sequential = time_sequential(classifier, paths)
        local = time_local(classifier, paths, args.workers)
        rounds.append({"sequential_s": sequential, "local_s": local, "local_speedup": sequential / local})
        print(f"round {i}: sequential {sequential:.1f} s, local {local:.1f} s", file=sys.stderr)
    seconds = {"sequential": statistics.median(r["sequential_s"] for r in rounds),
               "local": statistics.median(r["local_s"] for r in rounds)}
    cpus = os.cpu_count() or 2
    if not args.no_ray:
        for nodes, name in ((1, "ray 1 node"), (2, "ray 2 nodes")):
            seconds[name] = time_ray(out / "corpus", nodes, cpus)
            print(f"{name}: {seconds[name]:.1f} s", file=sys.stderr)
    result = {
        "benchmark": "bench_batch", "videos": len(paths), "views": "1x1", "cpus": cpus, "workers": args.workers,
        "platform": platform.platform(), "processor": platform.processor(), "note": args.note,
        "command": "python benchmarks/bench_batch.py " + " ".join(argv if argv is not None else sys.argv[1:]),
        "rounds": rounds, "seconds": seconds,
        "videos_per_s": {name: len(paths) / s for name, s in seconds.items()},
    }
    (out / "bench_batch.json").write_text(json.dumps(result, indent=2))
    draw(result, out / "bench_batch.png")
    print(json.dumps(result, indent=2))
    return result


if __name__ == "__main__":
    main()
