"""serving.supervisor.ManagedProcess with real small processes: readiness, timeouts, early exit, stopping a
whole process group (a grandchild that ignores SIGTERM included), cleanups, stopping a group by pgid from a
fresh object, the exit safety net and the parent-death signal. Every wait is bounded; every test checks that
its process groups are gone (os.killpg(pgid, 0) raises ProcessLookupError)."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest

from squeezetime.errors import SqueezeTimeError
from squeezetime.serving.supervisor import (ManagedProcess, NotReady, ProcessError, ProcessExited, StartFailed,
                                            group_alive, group_pids)

pytestmark = pytest.mark.timeout(120)
ROOT = Path(__file__).resolve().parent.parent
PY = sys.executable

# A child that prints, spawns a grandchild ignoring SIGINT and SIGTERM (its pid goes to argv[1]), then makes
# the file argv[2] (the readiness marker) and sleeps. The leader itself exits on SIGTERM.
WITH_GRANDCHILD = textwrap.dedent("""
    import os, signal, subprocess, sys, time
    print("leader starting", flush=True)
    grandchild = subprocess.Popen([sys.executable, "-c",
        "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); "
        "signal.signal(signal.SIGINT, signal.SIG_IGN); print('grandchild up', flush=True); time.sleep(300)"])
    open(sys.argv[1], "w").write(str(grandchild.pid))
    time.sleep(0.2)
    open(sys.argv[2], "w").write("ready")
    print("leader ready", flush=True)
    time.sleep(300)
""")
STUBBORN = ("import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); "
            "signal.signal(signal.SIGINT, signal.SIG_IGN); print('ignoring signals', flush=True); time.sleep(300)")


def gone(pgid: int, within: float = 10.0) -> bool:
    """The process group has no member at all (zombies included: their parent reaps them in a moment)."""
    until = time.monotonic() + within
    while True:
        try:
            os.killpg(pgid, 0)
        except ProcessLookupError:
            return True
        if time.monotonic() > until:
            return False
        time.sleep(0.05)


@pytest.fixture
def groups():
    """Process groups a test made: after it, each must be gone (a leftover is killed, then reported)."""
    made: list[int] = []
    yield made
    left = [g for g in made if not gone(g, within=5)]
    for g in left:
        try:
            os.killpg(g, signal.SIGKILL)
        except ProcessLookupError:
            pass
    assert not left, f"process groups left behind: {left}"


def start(groups, command, tmp_path, **options) -> ManagedProcess:
    proc = ManagedProcess(command, log_path=tmp_path / "out.log", **options).start()
    groups.append(proc.pgid)
    return proc


@pytest.mark.slow
def test_ready_then_stop_kills_the_whole_group(groups, tmp_path):
    pid_file, marker = tmp_path / "grandchild.pid", tmp_path / "ready"
    proc = start(groups, [PY, "-c", WITH_GRANDCHILD, pid_file, marker], tmp_path, name="toy")
    t0 = time.monotonic()
    proc.wait_ready(marker.exists, timeout=60, interval=0.05)
    assert time.monotonic() - t0 < 60  # a hang guard: ready in well under 1 s (two Python starts)
    grandchild = int(pid_file.read_text())
    assert os.getpgid(grandchild) == proc.pgid == proc.pid
    assert set(group_pids(proc.pgid)) == {proc.pgid, grandchild}
    assert group_alive(proc.pgid) and proc.alive() and proc.poll() is None
    t0 = time.monotonic()
    code = proc.stop(timeout=10, kill_timeout=10)
    assert time.monotonic() - t0 < 15  # a hang guard: SIGTERM ends the group in well under 1 s
    assert code == -signal.SIGTERM  # the leader took the polite signal; the grandchild needed SIGKILL
    assert gone(proc.pgid) and not proc.alive()
    with pytest.raises(ProcessLookupError):
        os.kill(grandchild, 0)
    log = (tmp_path / "out.log").read_text()
    assert "leader ready" in log and "grandchild up" in log  # both wrote to the one log file


def test_readiness_timeout_quotes_the_log_and_leaves_no_process(groups, tmp_path):
    proc = start(groups, [PY, "-c", "print('still loading the model', flush=True); import time; time.sleep(300)"],
                 tmp_path, name="slow")
    calls = []

    def probe():
        calls.append(1)
        return "health check: 503"

    t0 = time.monotonic()
    with pytest.raises(NotReady) as err:
        proc.wait_ready(probe, timeout=1.5, interval=0.1)
    assert time.monotonic() - t0 < 20  # the 1.5 s wait and a stop (typically 1.6 s in all): over 10x
    message = str(err.value)
    assert "slow was not ready within 1.5 s (health check: 503); stopped it" in message
    assert "still loading the model" in message and err.value.tail in message
    assert isinstance(err.value, SqueezeTimeError) and isinstance(err.value, ProcessError)
    assert len(calls) > 3
    assert gone(proc.pgid)
    with pytest.raises(ProcessLookupError):
        os.killpg(proc.pgid, 0)


def test_early_exit_is_seen_at_once(groups, tmp_path):
    script = "import sys, time; time.sleep(0.3); print('fatal: no such model', flush=True); sys.exit(3)"
    proc = start(groups, [PY, "-c", script], tmp_path, name="crasher")
    t0 = time.monotonic()
    with pytest.raises(ProcessExited) as err:
        proc.wait_ready(lambda: False, timeout=100, interval=5.0)  # a long interval: the exit ends the wait
    # the exit ends the wait, not the 5 s interval or the 100 s timeout: typically 0.4 s (a Python start and the
    # script's 0.3 s); 10 s is over 10x that and still well under the 100 s a missed exit would cost
    assert time.monotonic() - t0 < 10
    assert err.value.returncode == 3 and proc.returncode == 3
    assert "crasher exited with status 3 while starting" in str(err.value) and "fatal: no such model" in str(err.value)
    assert gone(proc.pgid)


def test_failure_probe_ends_the_wait_with_its_reason(groups, tmp_path):
    script = "import time; print('Backend worker process died', flush=True); time.sleep(300)"
    proc = start(groups, [PY, "-c", script], tmp_path, name="workers",
                 tail=lambda: "custom tail: " + (tmp_path / "out.log").read_text().strip())
    log = tmp_path / "out.log"

    def worker_failure():
        return "a worker failed" if "worker process died" in log.read_text() else None

    with pytest.raises(StartFailed) as err:
        proc.wait_ready(lambda: False, timeout=60, failure=worker_failure, interval=0.05)
    assert "workers failed while starting: a worker failed" in str(err.value)
    assert "custom tail: Backend worker process died" in str(err.value)
    assert gone(proc.pgid)


def test_leader_ignoring_the_polite_signal_is_killed_in_bounded_time(groups, tmp_path):
    proc = start(groups, [PY, "-c", STUBBORN], tmp_path, stop_signal=signal.SIGINT)
    deadline = time.monotonic() + 30
    while "ignoring" not in (tmp_path / "out.log").read_text() and time.monotonic() < deadline:
        time.sleep(0.05)
    t0 = time.monotonic()
    assert proc.stop(timeout=0.5, kill_timeout=10) == -signal.SIGKILL
    assert time.monotonic() - t0 < 10  # the 0.5 s grace, then SIGKILL: typically 0.5 s; 10 s is 20x
    assert gone(proc.pgid)


def test_cleanups_run_exactly_once(groups, tmp_path):
    ran = []
    proc = start(groups, [PY, "-c", "import time; time.sleep(300)"], tmp_path)
    proc.add_cleanup(ran.append, "first")
    proc.add_cleanup(lambda: 1 / 0)  # a failing cleanup warns, the others still run
    proc.add_cleanup(ran.append, "second")
    with pytest.warns(RuntimeWarning, match="cleanup"):
        proc.stop(timeout=5)
    proc.stop(timeout=5)
    proc.stop(timeout=5)
    assert ran == ["first", "second"]
    assert gone(proc.pgid)
    # also when a failed readiness wait stops the process, and a later stop() changes nothing
    ran.clear()
    proc = start(groups, [PY, "-c", "import sys; sys.exit(1)"], tmp_path)
    proc.add_cleanup(ran.append, "once")
    with pytest.raises(ProcessExited):
        proc.wait_ready(lambda: False, timeout=60)
    proc.stop()
    assert ran == ["once"]


@pytest.mark.slow
def test_stop_by_pgid_from_a_fresh_object(groups, tmp_path):
    """A group started by another (now gone) process, as ``squeezetime torchserve start`` leaves it: the
    leader's parent is init, and a fresh object stops the group, grandchild ignoring SIGTERM included."""
    pid_file, marker = tmp_path / "grandchild.pid", tmp_path / "ready"
    launcher = ("import subprocess, sys; p = subprocess.Popen(sys.argv[1:], start_new_session=True, "
                "stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL); print(p.pid)")
    out = subprocess.run([PY, "-c", launcher, PY, "-c", WITH_GRANDCHILD, str(pid_file), str(marker)],
                         capture_output=True, text=True, timeout=60, check=True)
    pgid = int(out.stdout)
    groups.append(pgid)
    deadline = time.monotonic() + 60
    while not marker.exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert marker.exists() and len(group_pids(pgid)) == 2
    fresh = ManagedProcess.for_group(pgid, signal_group=True, name="adopted")
    assert fresh.popen is None and fresh.alive() and fresh.poll() is None
    t0 = time.monotonic()
    assert fresh.stop(timeout=2, kill_timeout=10) is None  # not our child: no exit status
    assert time.monotonic() - t0 < 30  # a hang guard: the 2 s grace for the grandchild, then SIGKILL (15x)
    assert gone(pgid) and not group_alive(pgid)
    with pytest.raises(ProcessLookupError):
        os.killpg(pgid, 0)


def test_for_group_returns_the_object_that_started_it(groups, tmp_path):
    proc = start(groups, [PY, "-c", "import time; time.sleep(300)"], tmp_path, detached=True)
    assert ManagedProcess.for_group(proc.pgid) is proc
    proc.popen.kill()  # the leader dies on its own: group_alive reaps our zombie, so the group reads as gone
    deadline = time.monotonic() + 10
    while group_alive(proc.pgid) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not group_alive(proc.pgid)
    proc.stop()
    assert ManagedProcess.for_group(proc.pgid) is not proc  # forgotten once stopped


def test_start_failure_is_a_process_error(tmp_path):
    with pytest.raises(ProcessError, match="cannot start"):
        ManagedProcess([str(tmp_path / "no-such-binary")], log_path=tmp_path / "log").start()


def test_started_from_a_thread_gets_no_parent_death_signal(groups, tmp_path):
    """The kernel would kill the child when the forking thread ends: off for a non-main thread."""
    box = {}
    thread = threading.Thread(target=lambda: box.setdefault(
        "proc", ManagedProcess([PY, "-c", "import time; time.sleep(300)"], log_path=tmp_path / "log").start()))
    thread.start()
    thread.join(timeout=60)
    proc = box["proc"]
    groups.append(proc.pgid)
    time.sleep(0.5)
    assert proc.poll() is None, "the child died with the thread that started it"
    proc.stop(timeout=5)


# -- the interpreter that started the process goes away ----------------------------------------------------------
# The launcher imports the supervisor without squeezetime/__init__ (which imports torch: seconds per launch).
LAUNCHER = textwrap.dedent("""
    import os, signal, sys, types
    package = types.ModuleType("squeezetime")
    package.__path__ = [os.path.join(sys.argv[1], "squeezetime")]
    sys.modules["squeezetime"] = package
    from squeezetime.serving.supervisor import ManagedProcess
    how = sys.argv[2]
    proc = ManagedProcess([sys.executable, "-c", "import time; time.sleep(300)"], detached=(how == "detached"))
    proc.start()
    print(proc.pgid, flush=True)
    if how == "killed":
        os.kill(os.getpid(), signal.SIGKILL)
""")


def launch(how: str) -> int:
    out = subprocess.run([PY, "-c", LAUNCHER, str(ROOT), how], capture_output=True, text=True, timeout=60)
    assert out.stdout.strip(), out.stderr
    return int(out.stdout.split()[0])


@pytest.mark.parametrize("how", ["exits", "killed"])
def test_child_does_not_outlive_its_launcher(groups, how):
    """Normal exit: the atexit safety net stops it. SIGKILL of the launcher: the parent-death signal (Linux)."""
    if how == "killed" and not sys.platform.startswith("linux"):
        pytest.skip("PR_SET_PDEATHSIG is Linux only")
    pgid = launch(how)
    groups.append(pgid)
    assert gone(pgid, within=15), f"the child outlived a launcher that {how}"


@pytest.mark.slow
def test_detached_child_outlives_its_launcher(groups):
    pgid = launch("detached")
    groups.append(pgid)
    time.sleep(0.5)
    assert group_alive(pgid)
    ManagedProcess.for_group(pgid).stop(timeout=5)
    assert gone(pgid)


# -- what a killed launcher leaves: owner files and the stale-directory rule ------------------------------------------
def test_pid_alive_knows_dead_zombie_and_reused_pids(tmp_path):
    from squeezetime.serving.supervisor import pid_alive, process_start_time

    me = os.getpid()
    assert pid_alive(me) and pid_alive(me, process_start_time(me))
    assert not pid_alive(me, process_start_time(me) + 1)  # same pid, another start time: another process
    child = subprocess.Popen([PY, "-c", "pass"])
    deadline = time.monotonic() + 30
    while Path(f"/proc/{child.pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z" \
            and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not pid_alive(child.pid)  # a zombie runs nothing
    child.wait(timeout=30)
    assert not pid_alive(child.pid) and process_start_time(child.pid) is None
    assert not pid_alive(0) and not pid_alive(-1)


def test_clean_stale_dirs_only_removes_dirs_of_dead_owners_nobody_uses(tmp_path):
    from squeezetime.serving.leftovers import (OWNER_FILE, clean_stale_dirs, owned_tempdir, processes_mentioning,
                                               read_owner)

    prefix = "st-test-"
    child = subprocess.Popen([PY, "-c", "pass"])
    child.wait(timeout=30)
    dead = owned_tempdir(prefix, tmp_path)
    live = owned_tempdir(prefix, tmp_path, note="mine")
    assert read_owner(live)["pid"] == os.getpid() and read_owner(live)["note"] == "mine"
    unowned = tmp_path / f"{prefix}no-owner"
    unowned.mkdir()
    named = owned_tempdir(prefix, tmp_path)
    other = owned_tempdir("other-prefix-", tmp_path)
    for path in (dead, named, other):  # owned by a process that has exited
        (path / OWNER_FILE).write_text(json.dumps({**read_owner(path), "pid": child.pid, "start_time": None}))
    holder = subprocess.Popen([PY, "-c", "import time; time.sleep(60)", str(named / "x")])
    seen = []
    try:
        deadline = time.monotonic() + 10
        while not processes_mentioning(str(named)) and time.monotonic() < deadline:
            time.sleep(0.05)
        removed = clean_stale_dirs([prefix], tmp_path, on_remove=lambda p, o: seen.append((p, o["pid"])))
    finally:
        holder.kill()
        holder.wait(timeout=30)
    assert removed == [dead] and seen == [(dead, child.pid)] and not dead.exists()
    assert live.exists() and unowned.exists() and named.exists() and other.exists()
    assert clean_stale_dirs([prefix], tmp_path) == [named]  # nobody names it any more
