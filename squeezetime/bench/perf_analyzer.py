"""Triton's own benchmark client, ``perf_analyzer``, pointed at our Triton models and at TorchServe.

``perf_analyzer`` is the C++ load generator users trust for Triton numbers (and it speaks TorchServe's HTTP
API with ``--service-kind torchserve``). It ships only in the ``tritonclient==2.51.0`` wheel; ``make test``
puts that wheel in ``.venv-perf`` (see mk/perf.mk) with the two shared libraries it loads: ``libb64.so.0d``
(Debian ``libb64-0d``) and ``libcudart.so.12`` (a load-time dependency only: the ``nvidia-cuda-runtime-cu12``
wheel, put on ``LD_LIBRARY_PATH`` here). Found as ``$SQUEEZETIME_PERF_ANALYZER``, then ``.venv-perf`` beside
this checkout, then ``PATH``.

One call of ``measure`` is one concurrency level: a CSV row of perf_analyzer, parsed. Levels run one call
each, so the caller can measure the in-process reference right before each level (this machine is shared).
"""
from __future__ import annotations

import base64
import csv
import glob
import json
import os
import shutil
import struct
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

from ..errors import SqueezeTimeError

CHECKOUT = Path(__file__).resolve().parents[2]
LATENCY_COLUMNS = {"p50 latency": "p50", "p90 latency": "p90", "p95 latency": "p95", "p99 latency": "p99"}
SERVER_COLUMNS = {"Server Queue": "server_queue", "Server Compute Infer": "server_compute_infer"}


class PerfAnalyzerError(SqueezeTimeError, RuntimeError):
    """perf_analyzer is missing, cannot start, or did not produce a measurement."""


def find_perf_analyzer() -> Path | None:
    candidates = [os.environ.get("SQUEEZETIME_PERF_ANALYZER"), CHECKOUT / ".venv-perf" / "bin" / "perf_analyzer",
                  shutil.which("perf_analyzer")]
    for c in candidates:
        if c and Path(c).is_file() and os.access(c, os.X_OK):
            return Path(c)
    return None


def perf_env(binary: Path) -> dict:
    """The environment perf_analyzer loads in: libcudart.so.12 from the CUDA runtime wheel of its venv."""
    env = dict(os.environ)
    libs = glob.glob(str(binary.parent.parent / "lib" / "python3*" / "site-packages" / "nvidia" / "cuda_runtime"
                         / "lib"))
    if libs:
        env["LD_LIBRARY_PATH"] = os.pathsep.join([*libs, *filter(None, [env.get("LD_LIBRARY_PATH")])])
    return env


def check_runs(binary: Path | None = None) -> Path:
    """The binary, after checking it starts (its shared libraries load); PerfAnalyzerError saying why not."""
    binary = binary or find_perf_analyzer()
    if binary is None:
        raise PerfAnalyzerError("perf_analyzer not found: `make perf-setup` installs it into .venv-perf "
                                "(or set SQUEEZETIME_PERF_ANALYZER)")
    probe = subprocess.run([str(binary), "--version"], env=perf_env(binary), capture_output=True, text=True,
                           timeout=60)
    if "error while loading shared libraries" in probe.stderr:
        raise PerfAnalyzerError(f"perf_analyzer cannot start: {probe.stderr.strip()} "
                                "(apt install libb64-0d; pip install nvidia-cuda-runtime-cu12 in its venv)")
    return binary


def serialized_bytes(*items: bytes) -> bytes:
    """A BYTES tensor as Triton lays it out: each element as a 4-byte little-endian length and its bytes."""
    return b"".join(struct.pack("<I", len(b)) + b for b in items)


def triton_bytes_input(path: Path, inputs: dict[str, bytes]) -> Path:
    """perf_analyzer ``--input-data`` JSON giving each BYTES input (shape [1]) as base64 of its serialized form."""
    step = {name: {"b64": base64.b64encode(serialized_bytes(value)).decode(), "shape": [1]}
            for name, value in inputs.items()}
    path.write_text(json.dumps({"data": [step]}))
    return path


def torchserve_input(path: Path, body_file: Path) -> Path:
    """perf_analyzer ``--input-data`` JSON for ``--service-kind torchserve``: the file it posts per request."""
    path.write_text(json.dumps({"data": [{"TORCHSERVE_INPUT": [str(Path(body_file).resolve())]}]}))
    return path


@dataclass
class Level:
    """What to send at one concurrency level."""
    model: str
    url: str  # host:port (gRPC for Triton, HTTP inference port for TorchServe)
    concurrency: int
    service_kind: str = "triton"
    protocol: str = "grpc"
    shape: str | None = None  # e.g. "CLIP:16,224,224,3" (random data of that shape)
    input_data: Path | None = None
    requests_per_window: int = 40
    stability_percent: int = 30
    max_trials: int = 6
    timeout_s: float = 600.0

    def command(self, binary: Path, csv_path: Path, stability: int, on_p99: bool = True) -> list[str]:
        cmd = [str(binary), "-m", self.model, "-u", self.url, "-i", self.protocol,
               "--service-kind", self.service_kind, "--concurrency-range", f"{self.concurrency}:{self.concurrency}",
               "--measurement-mode", "count_windows", "--measurement-request-count", str(self.requests_per_window),
               "-s", str(stability), "--max-trials", str(self.max_trials), "-f", str(csv_path)]
        if on_p99:  # stabilise on the p99 latency (the tail we report), not only the mean
            cmd += ["--percentile", "99"]
        if self.shape:
            cmd += ["--shape", self.shape]
        if self.input_data:
            cmd += ["--input-data", str(self.input_data)]
        return cmd


def parse_csv(path: Path) -> dict:
    """perf_analyzer's ``-f`` CSV (one row per level) -> {"throughput", "latency_ms": {p50..p99}, server times}."""
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    if not rows:
        raise PerfAnalyzerError(f"{path}: perf_analyzer wrote no measurement")
    row = rows[-1]
    out = {"concurrency": int(row["Concurrency"]), "requests_per_s": float(row["Inferences/Second"]),
           "latency_ms": {short: float(row[col]) / 1000 for col, short in LATENCY_COLUMNS.items() if col in row}}
    out["server_ms"] = {short: float(row[col]) / 1000 for col, short in SERVER_COLUMNS.items() if row.get(col)}
    return out


def measure(level: Level, binary: Path | None = None) -> dict:
    """Run perf_analyzer for one level. A shared machine may never look stable at ``stability_percent`` (three
    windows whose p99 agree within it): then on the mean latency within 100 %, then within 1000 % (which takes
    the windows as they come); the row says which criterion held (``stability_percent``, ``stable_on``)."""
    binary = binary or check_runs()
    attempts = [(level.stability_percent, True), (100, False), (1000, False)]
    with tempfile.TemporaryDirectory(prefix="squeezetime-perf-") as tmp:
        csv_path = Path(tmp) / "levels.csv"
        errors = []
        for stability, on_p99 in attempts:
            proc = subprocess.run(level.command(binary, csv_path, stability, on_p99), env=perf_env(binary),
                                  capture_output=True, text=True, timeout=level.timeout_s)
            if proc.returncode == 0 and csv_path.exists():
                row = parse_csv(csv_path)
                row.update(stability_percent=stability, stable_on="p99" if on_p99 else "mean",
                           service_kind=level.service_kind, model=level.model)
                return row
            errors.append((proc.stdout + proc.stderr).strip().splitlines()[-3:])
    raise PerfAnalyzerError(f"perf_analyzer measured nothing for {level.model} at concurrency "
                            f"{level.concurrency}: {errors}")


__all__ = ["Level", "PerfAnalyzerError", "check_runs", "find_perf_analyzer", "measure", "parse_csv", "perf_env",
           "serialized_bytes", "torchserve_input", "triton_bytes_input"]
