"""What a launcher killed outright leaves behind, and who removes it.

`squeezetime serve` SIGKILLed: tritonserver dies with it (parent-death signal), its python stubs exit by
themselves, and the next TritonServer.start() removes the work and demo-repository temp dirs of the dead
launcher. A harder crash (launcher and the server's whole group SIGKILLed at once) also leaves the stubs' /dev/shm
regions: the next start removes those too. The stale-file rules themselves are checked with fake leftovers (a
dead owner is removed; a live owner, a live process naming the file, or a directory without an owner file keep
theirs), and TorchServe's stale run-directory state of a dead group. Every wait is bounded; every process a
test starts is killed in its `finally`.
"""
from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from support.triton import require_tritonserver
from support.waiting import wait_for

from squeezetime.serving.leftovers import OWNER_FILE, processes_mentioning, read_owner, write_owner
from squeezetime.serving.supervisor import group_pids
from squeezetime.serving.triton.leftovers import clean_stale
from squeezetime.serving.triton.server import TritonServer
from squeezetime.serving.triton.shm import SHM_PREFIX, stale_shm_prefixes

pytestmark = pytest.mark.timeout(240)
ROOT = Path(__file__).resolve().parent.parent

IDENTITY_CONFIG = """name: "identity"
backend: "python"
max_batch_size: 0
input [ { name: "IN" data_type: TYPE_FP32 dims: [ 1 ] } ]
output [ { name: "OUT" data_type: TYPE_FP32 dims: [ 1 ] } ]
instance_group [ { count: 1 kind: KIND_CPU } ]
"""
IDENTITY_MODEL = """import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    def execute(self, requests):
        return [pb_utils.InferenceResponse([pb_utils.Tensor("OUT", pb_utils.get_input_tensor_by_name(r, "IN")
                                                            .as_numpy())]) for r in requests]
"""


def identity_repo(base: Path) -> Path:
    """A one-model repository that loads in about a second (no torch): for servers whose models do not matter."""
    model = base / "identity"
    (model / "1").mkdir(parents=True)
    (model / "config.pbtxt").write_text(IDENTITY_CONFIG)
    (model / "1" / "model.py").write_text(IDENTITY_MODEL)
    return base


def dead_pid() -> int:
    """The pid of a process that has exited (and was reaped)."""
    p = subprocess.Popen([sys.executable, "-c", "pass"])
    p.wait(timeout=30)
    return p.pid


def server_pids(*paths) -> list[int]:
    """tritonserver and stub processes whose command line names one of ``paths`` (its repository, its work dir)."""
    found = set()
    for path in paths:
        for pid in processes_mentioning(str(path)):
            try:
                cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
            except OSError:
                continue
            if b"tritonserver" in cmdline or b"triton_python_backend_stub" in cmdline:
                found.add(pid)
    return sorted(found)


def pgid_of(pid: int) -> int | None:
    try:
        return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[2])
    except (OSError, IndexError, ValueError):
        return None


def start_serve(args: list[str], tmp_path: Path, timeout: float = 180.0):
    """`python -m squeezetime.cli serve ARGS` with output in files; returns (Popen, stdout path, stderr path)
    once its "ready:" line is there (bounded)."""
    from squeezetime.serving.triton import free_port

    ports = [str(free_port()) for _ in range(3)]
    out, err = tmp_path / "serve.out", tmp_path / "serve.err"
    with open(out, "wb") as o, open(err, "wb") as e:
        proc = subprocess.Popen([sys.executable, "-m", "squeezetime.cli", "serve", *args, "--grpc-port", ports[0],
                                 "--http-port", ports[1], "--metrics-port", ports[2]], stdout=o, stderr=e,
                                stdin=subprocess.DEVNULL, cwd=ROOT)
    ready = wait_for(lambda: proc.poll() is not None or "ready:" in out.read_text(), timeout, 0.25)
    if proc.poll() is not None or not ready:
        proc.kill()
        proc.wait(timeout=30)
        pytest.fail(f"serve not ready within {timeout} s: {out.read_text()}\n{err.read_text()[-3000:]}")
    return proc, out, err, ports


def launcher_paths(out: Path, err: Path) -> tuple[Path, Path]:
    """The served repository and the work dir (where the log is) from serve's own lines."""
    repo = Path(re.search(r" on (\S+) \.\.\.", err.read_text()).group(1))
    workdir = Path(re.search(r"log: (\S+)/tritonserver\.log", out.read_text()).group(1))
    return repo, workdir


def kill_leftovers(pids) -> None:
    for pid in pids:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


def start_and_stop_a_new_server(tmp_path: Path) -> list[str]:
    server = TritonServer(identity_repo(tmp_path / "fresh_repo"), start_timeout=120)
    try:
        server.start()
        return server.stale_removed
    finally:
        server.cleanup()


# -- a real `squeezetime serve`, SIGKILLed ----------------------------------------------------------------------
def test_sigkilled_serve_leaves_no_process_and_the_next_start_removes_its_files(tmp_path):
    require_tritonserver()
    proc, out, err, ports = start_serve(["--demo"], tmp_path)
    paths: tuple = ()
    try:
        ready = out.read_text()
        assert f"ready: gRPC 127.0.0.1:{ports[0]}" in ready and f"metrics http://127.0.0.1:{ports[2]}/metrics" in ready
        repo, workdir = paths = launcher_paths(out, err)
        owner = read_owner(workdir)
        assert owner is not None and owner["pid"] == proc.pid
        assert read_owner(repo.parent)["pid"] == proc.pid  # the demo repository's temp dir is owned too
        shm_prefix = owner["shm_prefix"]
        assert shm_prefix.startswith(f"{SHM_PREFIX}st{proc.pid}_")
        pids = server_pids(repo, workdir)
        assert len(pids) >= 4, pids  # tritonserver + 1 clip stub + 2 video stubs
        pgid = pgid_of(pids[0])

        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
        t0 = time.monotonic()
        # a wait for the processes to go (the kernel's parent-death signal: seconds, printed below), not a timing;
        # 120 s only fails a server that never goes
        left = wait_for(lambda: not server_pids(repo, workdir) and not group_pids(pgid), 120)
        took = time.monotonic() - t0
        assert left, f"still running 120 s after the launcher was killed: {server_pids(repo, workdir)}"
        print(f"tritonserver and stubs gone {took:.1f} s after SIGKILL of the launcher")
        # what nobody could remove: the temp dirs (the stubs remove their own shm regions when they can)
        assert workdir.is_dir() and repo.parent.is_dir()

        removed = start_and_stop_a_new_server(tmp_path)
        assert not workdir.exists() and not repo.parent.exists(), removed
        assert str(workdir) in removed and str(repo.parent) in removed
        assert not [p for p in os.listdir("/dev/shm") if p.startswith(shm_prefix)]
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=30)
        kill_leftovers(server_pids(*paths) if paths else [])


def test_crash_of_launcher_and_server_leaves_shm_that_the_next_start_removes(tmp_path):
    """Launcher and tritonserver's whole group SIGKILLed at once (OOM killer, cgroup kill): the stubs die before
    they can remove their regions."""
    require_tritonserver()
    proc, out, err, _ = start_serve(["--repo", str(identity_repo(tmp_path / "repo"))], tmp_path, timeout=120)
    pids: list[int] = []
    try:
        repo, workdir = launcher_paths(out, err)
        shm_prefix = read_owner(workdir)["shm_prefix"]
        pids = server_pids(repo, workdir)
        assert len(pids) >= 2, pids
        pgid = pgid_of(pids[0])
        proc.send_signal(signal.SIGKILL)
        os.killpg(pgid, signal.SIGKILL)
        proc.wait(timeout=30)
        assert wait_for(lambda: not server_pids(repo, workdir), 120)  # a wait for them to go, as above
        regions = [p for p in os.listdir("/dev/shm") if p.startswith(shm_prefix)]
        assert regions, "expected the killed stubs' regions to be left"
        assert shm_prefix in stale_shm_prefixes()

        removed = start_and_stop_a_new_server(tmp_path)
        assert not [p for p in os.listdir("/dev/shm") if p.startswith(shm_prefix)], removed
        assert not workdir.exists()
        assert {f"/dev/shm/{r}" for r in regions} <= set(removed)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=30)
        kill_leftovers(pids)


# -- the rules, with fake leftovers -----------------------------------------------------------------------------
@pytest.fixture
def fakes():
    """Files a test makes in /dev/shm and the temp dir; removed after it whatever happened."""
    made: list[Path] = []
    yield made
    import shutil
    for path in made:
        if path.is_dir():
            shutil.rmtree(path, ignore_errors=True)
        else:
            path.unlink(missing_ok=True)


def fake_region(fakes, pid: int) -> Path:
    path = Path("/dev/shm") / f"{SHM_PREFIX}st{pid}_{os.urandom(4).hex()}_fake-region"
    path.write_bytes(b"\0" * 16)
    fakes.append(path)
    return path


def fake_workdir(fakes, owner_pid: int | None, **extra) -> Path:
    path = Path(tempfile.mkdtemp(prefix="squeezetime-triton-"))
    fakes.append(path)
    (path / "backends").mkdir()
    if owner_pid is not None:
        write_owner(path, **extra)
        owner = json.loads((path / OWNER_FILE).read_text())
        owner.update(pid=owner_pid, start_time=None)
        (path / OWNER_FILE).write_text(json.dumps(owner))
    return path


def test_stale_rules_remove_only_what_dead_owners_left(fakes):
    dead = dead_pid()
    stale_region = fake_region(fakes, dead)
    live_region = fake_region(fakes, os.getpid())            # this process is its launcher: alive
    named_region = fake_region(fakes, dead)                  # launcher dead, but a live process names it
    stale_dir = fake_workdir(fakes, dead)
    live_dir = fake_workdir(fakes, os.getpid())
    no_owner_dir = fake_workdir(fakes, None)                 # maybe being made right now: never touched
    used_dir = fake_workdir(fakes, dead)                     # owner dead, but a process works in it
    region_of_dir = fake_region(fakes, os.getpid())          # named only by stale_dir's owner file
    owned = fake_workdir(fakes, dead, shm_prefix=region_of_dir.name[:-len("fake-region")])
    named_prefix = named_region.name[:-len("fake-region")]
    holders = [subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)", named_prefix]),
               subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"], cwd=used_dir / "backends")]
    try:
        assert wait_for(lambda: processes_mentioning(named_prefix) and processes_mentioning(
            "no such text", cwd_under=used_dir), 10)
        removed = clean_stale()
    finally:
        for h in holders:
            h.kill()
            h.wait(timeout=30)
    assert not stale_region.exists() and str(stale_region) in removed
    assert not stale_dir.exists() and str(stale_dir) in removed
    assert not owned.exists() and not region_of_dir.exists()  # the owner file's shm prefix went with its dir
    for kept in (live_region, named_region, live_dir, no_owner_dir, used_dir):
        assert kept.exists(), f"{kept} must be kept"
    # once nothing holds them any more, the next cleaner removes the rest of the dead launchers' files
    removed = clean_stale()
    assert not named_region.exists() and not used_dir.exists()
    assert live_region.exists() and live_dir.exists() and no_owner_dir.exists()


def test_torchserve_stale_state_of_a_dead_group_is_forgotten(tmp_path):
    from squeezetime.serving.torchserve import server
    from squeezetime.serving.torchserve.config import DEFAULT_PORTS

    run = tmp_path / "run"
    (run / "tmp").mkdir(parents=True)
    info = server.ServerInfo(str(run), dead_pid(), dict(DEFAULT_PORTS), ["squeezetime"], str(tmp_path))
    info.save()
    leftovers = [run / "key_file.json", run / "tmp" / server.PID_FILE, run / "tmp" / ".ts.sock.9000"]
    for path in leftovers:
        path.write_text("stale")
    assert server.stop(run, timeout=10) is False  # nothing was running ...
    assert not (run / "state.json").exists()      # ... and its stale state is gone
    assert not any(p.exists() for p in leftovers)
