"""Where served throughput goes: the CPU of each process while a server is under load, beside the in-process rate.

    python benchmarks/serving_gaps.py torchserve --out build/serving_gaps [--concurrency 8] [--max-batch-delay-ms 1]
    python benchmarks/serving_gaps.py triton --out build/serving_gaps [--concurrency 2 4 8] [--max-queue-delay-us 2000]
        [--instances 1 --threads 2]

- ``torchserve``: the demo model archived (batch 8, ``optimized``, 2 threads), loaded by perf_analyzer (multipart
  ``.npy`` uploads, what ``--service-kind torchserve`` sends) and by our ``RestClient`` (raw body) from
  ``--concurrency`` threads; for each, requests/s, the in-process rate at batch 8 measured right before, and the
  CPU share of the busiest processes while it ran (from ``/proc/<pid>/stat``: the Java frontend, the worker, ...).
- ``triton``: the ``squeezetime`` clip model under perf_analyzer at each concurrency, the same columns plus
  Triton's server-side queue and compute times.
Prints one JSON line per measurement and writes them to ``--out``/serving_gaps_<server>.json. Issue 10's note
and docs/triton.md ("What the gaps are made of") quote these figures. Not a test: the machine's speed drifts.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import squeezetime  # noqa: E402
from squeezetime.bench import perf_analyzer as pa  # noqa: E402
from squeezetime.bench.plot import figure  # noqa: E402
from squeezetime.bench.serving import in_process_classifier, in_process_throughput, run_load  # noqa: E402

TICK = os.sysconf("SC_CLK_TCK")


def cpu_seconds() -> dict[tuple[str, str], float]:
    """user + system CPU seconds of every process, keyed (pid, name)."""
    out = {}
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            stat = Path(f"/proc/{pid}/stat").read_text()
        except OSError:
            continue
        name, fields = stat[stat.index("(") + 1:stat.rindex(")")], stat[stat.rindex(")") + 2:].split()
        out[(pid, name)] = (int(fields[11]) + int(fields[12])) / TICK
    return out


def busiest(before: dict, after: dict, seconds: float, top: int = 5) -> dict[str, int]:
    """CPU % (of one core) of the ``top`` busiest processes between two ``cpu_seconds`` samples."""
    used = {key: after[key] - before.get(key, 0.0) for key in after}
    return {f"{name}:{pid}": round(100 * v / seconds) for (pid, name), v in
            sorted(used.items(), key=lambda kv: -kv[1])[:top]}


def under_load(measure) -> tuple[object, dict]:
    """Run ``measure()``; the CPU split over its whole duration."""
    before, t0 = cpu_seconds(), time.perf_counter()
    result = measure()
    return result, busiest(before, cpu_seconds(), time.perf_counter() - t0)


def torchserve(args, classifier, out: Path) -> list[dict]:
    from squeezetime.bench.serving import torchserve_clip_server
    from squeezetime.serving.torchserve.archive import ArchiveOptions
    from squeezetime.serving.torchserve.client import RestClient

    options = ArchiveOptions(batch_size=8, threads=2, backend="optimized", max_batch_delay_ms=args.max_batch_delay_ms)
    rows = []
    with torchserve_clip_server(out, classifier, options) as (info, model, body, data):
        rest = RestClient(info.inference_url, model)
        level = pa.Level(model, info.inference_url.replace("http://", ""), args.concurrency,
                         service_kind="torchserve", protocol="http", input_data=data, requests_per_window=30)
        clients = {"perf_analyzer (multipart)": lambda: pa.measure(level)["requests_per_s"],
                   "RestClient (raw body)": lambda: run_load(args.concurrency, 120, lambda w: rest.predict(body),
                                                              1)["clips_per_s"]}
        run_load(args.concurrency, 16, lambda w: rest.predict(body), 1)  # workers warm, JIT compiled
        for name, load in clients.items():
            reference = in_process_throughput(classifier, 8, 3.0)["clips_per_s"]
            rps, split = under_load(load)
            rows.append({"server": "torchserve", "client": name, "concurrency": args.concurrency,
                         "max_batch_delay_ms": args.max_batch_delay_ms, "requests_per_s": rps,
                         "in_process_batch8_clips_per_s": reference, "fraction": rps / reference, "cpu_percent": split})
            print(json.dumps(rows[-1]), flush=True)
    return rows


def triton(args, classifier, out: Path) -> list[dict]:
    from squeezetime.serving.triton.repository import RepoOptions, write_repository
    from squeezetime.serving.triton.server import TritonServer

    repo = write_repository(out / "triton_repo", squeezetime.demo_model(), options=RepoOptions(
        max_batch_size=8, num_threads=args.threads, instances=args.instances, dtype="float32", backend="optimized",
        max_queue_delay_us=args.max_queue_delay_us))
    d = classifier.data_config
    rows = []
    with TritonServer(repo, log_path=out / "tritonserver.log") as server:
        url = server.grpc_url.replace("grpc://", "")
        for conc in args.concurrency_levels:
            reference = {b: in_process_throughput(classifier, b, 3.0)["clips_per_s"] for b in sorted({min(conc, 8), 8})}
            level = pa.Level("squeezetime", url, conc, shape=f"CLIP:{d.num_frames},{d.crop_size},{d.crop_size},3",
                             requests_per_window=40)
            row, split = under_load(lambda: pa.measure(level))
            rows.append({"server": "triton", "concurrency": conc, "max_queue_delay_us": args.max_queue_delay_us,
                         "instances": args.instances, "threads_per_instance": args.threads,
                         "requests_per_s": row["requests_per_s"], "server_ms": row["server_ms"],
                         "in_process_clips_per_s_by_batch": reference,
                         "fraction_of_batch8": row["requests_per_s"] / reference[8], "cpu_percent": split})
            print(json.dumps(rows[-1]), flush=True)
    return rows


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("server", choices=["torchserve", "triton"])
    p.add_argument("--out", default="build/serving_gaps")
    p.add_argument("--concurrency", type=int, nargs="+", default=None,
                   help="torchserve: one level (default 8); triton: levels (default 2 4 8)")
    p.add_argument("--max-batch-delay-ms", type=int, default=1, help="TorchServe archive's maxBatchDelay")
    p.add_argument("--max-queue-delay-us", type=int, default=2000, help="Triton dynamic batcher's queue delay")
    p.add_argument("--instances", type=int, default=1, help="Triton: instances of the clip model (default 1)")
    p.add_argument("--threads", type=int, default=2, help="Triton: torch threads per instance (default 2)")
    args = p.parse_args(argv)
    args.concurrency_levels = args.concurrency or [2, 4, 8]
    args.concurrency = (args.concurrency or [8])[0]
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    pa.check_runs()
    classifier = in_process_classifier(squeezetime.demo_model(), "float32", 8, 2, "optimized")
    rows = (torchserve if args.server == "torchserve" else triton)(args, classifier, out)
    (out / f"serving_gaps_{args.server}.json").write_text(json.dumps(rows, indent=2))
    plot(rows, out / f"serving_gaps_{args.server}.png")
    return 0


def plot(rows: list[dict], path: Path) -> None:
    """One stacked bar per measurement: the CPU % of each busy process (names without pids), throughput on top."""
    names = sorted({k.split(":")[0] for r in rows for k in r["cpu_percent"]})
    with figure(path, figsize=(1.8 + 1.6 * len(rows), 4.5)) as (_, ax):
        labels = [r.get("client") or f"concurrency {r['concurrency']}" for r in rows]
        bottom = np.zeros(len(rows))
        for name in names:
            share = np.array([sum(v for k, v in r["cpu_percent"].items() if k.split(":")[0] == name) for r in rows])
            ax.bar(labels, share, bottom=bottom, label=name)
            bottom += share
        for i, r in enumerate(rows):
            ax.text(i, bottom[i] + 3, f"{r['requests_per_s']:.1f} req/s", ha="center", fontsize=8)
        ax.axhline(100 * (os.cpu_count() or 1), color="grey", linestyle=":", linewidth=1)
        ax.set_ylabel("CPU % (100 = one core)")
        ax.set_title(f"{rows[0]['server']}: CPU by process under load")
        ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1, 1))


if __name__ == "__main__":
    sys.exit(main())
