"""How much ``/dev/shm`` a model repository may take, known before the server starts; and the regions a server
leaves there (``remove_shm_regions``, ``stale_shm_prefixes``).

Triton's python backend moves each request's tensors through one shared-memory region per model instance
(per stub) in ``/dev/shm``. A region grows to the most it ever had to hold at once and does not shrink until
the server stops, and tmpfs pages count against the container's memory. The repository's own limits bound
it, so the launcher can say the worst case up front and refuse a host whose ``/dev/shm`` cannot hold it
(Docker's default is 64 MiB) instead of failing under the first large videos:

* ``squeezetime``: one full batch of clips in, logits and probabilities out;
* ``squeezetime_video``: the videos it holds (in decode or scoring: ``max_in_flight``, plus one batch being
  received), each up to ``max_video_bytes``, and the clip batches it sends to ``squeezetime`` through BLS.

Each server gets its own region prefix (``shm_prefix``: the launcher's pid and a random tag), so stopping one
removes only its own regions, and a later launcher can tell the regions of a dead one.
"""
from __future__ import annotations

import glob
import os
import re
import uuid
from dataclasses import dataclass
from pathlib import Path

from ...errors import InputError
from ..leftovers import processes_mentioning
from ..supervisor import pid_alive

MiB = 1024 * 1024
DTYPE_BYTES = {"TYPE_UINT8": 1, "TYPE_INT8": 1, "TYPE_BOOL": 1, "TYPE_FP16": 2, "TYPE_BF16": 2, "TYPE_INT32": 4,
               "TYPE_FP32": 4, "TYPE_INT64": 8, "TYPE_FP64": 8}
REGION_MINIMUM = 32 * MiB  # the launcher's shm-default-byte-size: every stub's region starts this big
SHM_CHECKS = ("error", "warn", "off")
SHM_PREFIX = "triton_python_backend_shm_region_"
_SHM_OWNER = re.compile(re.escape(SHM_PREFIX) + r"st(\d+)_([0-9a-f]+)_")  # ...st<launcher pid>_<uuid>_


@dataclass(frozen=True)
class ModelShm:
    name: str
    instances: int
    bytes_per_instance: int

    @property
    def total(self) -> int:
        return self.instances * self.bytes_per_instance


@dataclass(frozen=True)
class ShmPlan:
    models: tuple[ModelShm, ...]
    available: int | None  # free bytes in /dev/shm (None: no /dev/shm here)

    @property
    def total(self) -> int:
        return sum(m.total for m in self.models)

    def describe(self) -> str:
        parts = ", ".join(f"{m.name} {m.instances} x {m.bytes_per_instance / MiB:.0f} MiB" for m in self.models)
        free = "unknown" if self.available is None else f"{self.available / MiB:.0f} MiB free"
        return f"shared memory: at most {self.total / MiB:.0f} MiB in /dev/shm ({parts}); {free}"

    def problem(self) -> str | None:
        if self.available is None or self.total <= self.available:
            return None
        return (f"{self.describe()}: /dev/shm is too small for this repository's worst case. Give the server more "
                "(docker run --shm-size, a Kubernetes emptyDir with medium: Memory and a sizeLimit) or lower "
                "max_video_bytes / max_in_flight / instance counts (squeezetime triton-repo --max-video-bytes, "
                "--video-instances, --max-batch-size)")


def _int(pattern: str, text: str, default: int) -> int:
    m = re.search(pattern, text, re.M)
    return int(m.group(1)) if m else default


def _parameter(text: str, key: str) -> str | None:
    m = re.search(r'key:\s*"' + re.escape(key) + r'"\s*value:\s*\{\s*string_value:\s*"([^"]*)"', text)
    return m.group(1) if m else None


def _tensor_bytes(block: str, max_video_bytes: int) -> int:
    """Bytes of one request's tensors declared in an ``input [...]`` or ``output [...]`` block."""
    total = 0
    for dtype, dims in re.findall(r"data_type:\s*(\w+)\s*dims:\s*\[([^\]]*)\]", block):
        shape = [int(d) for d in dims.split(",") if d.strip()]
        if dtype == "TYPE_STRING":  # a video, or a handful of short strings (views, labels)
            total += max_video_bytes if "VIDEO" in block else 4096
        elif all(d > 0 for d in shape):
            n = DTYPE_BYTES.get(dtype, 8)
            for d in shape:
                n *= d
            total += n
        else:  # -1 dims: our variable outputs are top-k lists
            total += 4096
    return total


def _blocks(text: str, name: str) -> str:
    m = re.search(rf"^{name}\s*\[(.*?)^\]", text, re.S | re.M)
    return m.group(1) if m else ""


def _instances(group: str) -> int:
    """Model instances of an instance group: ``count``, times the GPUs for KIND_GPU (each listed GPU, or each GPU
    this machine shows, gets ``count`` instances)."""
    count = _int(r"count:\s*(\d+)", group, 1)
    if "KIND_GPU" not in group:
        return count
    listed = re.search(r"gpus:\s*\[([^\]]*)\]", group)
    if listed:
        return count * max(1, len([g for g in listed.group(1).split(",") if g.strip()]))
    return count * max(1, _visible_gpus())


def _visible_gpus() -> int:
    try:
        import torch

        return torch.cuda.device_count()
    except Exception:  # noqa: BLE001 - no torch or no driver: the plan counts one
        return 1


def model_need(config: Path, clip_batch_bytes: int) -> ModelShm:
    text = config.read_text()
    name = re.search(r'^name:\s*"([^"]+)"', text, re.M).group(1)
    batch = max(1, _int(r"^max_batch_size:\s*(\d+)", text, 1))
    instances = _instances(_blocks(text, "instance_group"))
    max_video = int(_parameter(text, "max_video_bytes") or 0)
    inputs = [_tensor_bytes(b, max_video) for b in re.split(r"\n\s*\},\s*\{", _blocks(text, "input"))]
    per_request = sum(inputs) + _tensor_bytes(_blocks(text, "output"), max_video)
    need = batch * per_request
    if max_video:  # squeezetime_video: videos held while decoding/scoring, and its BLS clip batches
        threads = int(_parameter(text, "decode_threads") or 4)
        in_flight = int(_parameter(text, "max_in_flight") or 0) or 2 * threads
        need = (in_flight + batch) * per_request + in_flight * clip_batch_bytes
    return ModelShm(name, instances, max(need, REGION_MINIMUM))


def plan(repository: str | os.PathLike, shm_dir: str = "/dev/shm") -> ShmPlan:
    configs = sorted(Path(repository).glob("*/config.pbtxt"))
    if not configs:
        raise InputError(f"{repository}: no */config.pbtxt")
    clip_batch = 0
    for c in configs:  # the clip model's full batch: what each BLS call carries
        text = c.read_text()
        if re.search(r'name:\s*"CLIP"', text):
            clip_batch = max(1, _int(r"^max_batch_size:\s*(\d+)", text, 1)) * _tensor_bytes(_blocks(text, "input"), 0)
    try:
        st = os.statvfs(shm_dir)
        available = st.f_bavail * st.f_frsize
    except OSError:
        available = None
    return ShmPlan(tuple(model_need(c, clip_batch) for c in configs), available)


# -- the regions of running and dead servers ---------------------------------------------------------------
def shm_prefix() -> str:
    """A new server's region prefix: it names this launcher's pid (``stale_shm_prefixes`` reads it back)."""
    return f"{SHM_PREFIX}st{os.getpid()}_{uuid.uuid4().hex[:8]}_"


def remove_shm_regions(prefix: str) -> list[str]:
    """Remove ``/dev/shm/<prefix>*`` (the python backend's regions of one server); return what was removed."""
    removed = []
    for path in glob.glob(os.path.join("/dev/shm", glob.escape(prefix) + "*")):
        try:
            os.unlink(path)
            removed.append(path)
        except FileNotFoundError:
            pass
    return removed


def stale_shm_prefixes() -> dict[str, list[str]]:
    """Region prefixes of servers whose launcher (the pid in the prefix) is dead and that no live process
    mentions (tritonserver names its prefix on its command line, each stub its region): {prefix: [paths]}.
    Only this user's files. A reused launcher pid keeps them (the work directory's owner file catches that)."""
    groups: dict[str, list[str]] = {}
    for path in glob.glob(os.path.join("/dev/shm", glob.escape(SHM_PREFIX) + "st*")):
        m = _SHM_OWNER.match(os.path.basename(path))
        try:
            mine = os.lstat(path).st_uid == os.getuid()
        except OSError:
            continue
        if m and mine:
            groups.setdefault(m.group(0), []).append(path)
    return {prefix: paths for prefix, paths in groups.items()
            if not pid_alive(int(_SHM_OWNER.match(prefix).group(1))) and not processes_mentioning(prefix)}


__all__ = ["ModelShm", "SHM_CHECKS", "SHM_PREFIX", "ShmPlan", "model_need", "plan", "remove_shm_regions", "shm_prefix",
           "stale_shm_prefixes"]
