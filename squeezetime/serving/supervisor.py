"""One small process supervisor for the servers this package starts (tritonserver, TorchServe).

``ManagedProcess`` runs a command in its own process group (a new session) with its output going to a log
file (never to a pipe nobody reads), waits for readiness with the caller's probe under a deadline, and stops
the whole group: a polite signal, then SIGKILL, every wait bounded. It reaps its own child and runs the
cleanups registered with it exactly once. Processes this interpreter started are stopped at exit unless they
are ``detached`` (meant to outlive it, like ``squeezetime torchserve start``); such a group is stopped later,
from any process, with ``ManagedProcess.for_group(pgid).stop()``.

    proc = ManagedProcess(["server", "--port", "8000"], log_path="server.log", name="server")
    proc.add_cleanup(shutil.rmtree, workdir, ignore_errors=True)
    proc.start().wait_ready(lambda: http_ok("http://127.0.0.1:8000/ready"), timeout=60)
    ...
    proc.stop()

On Linux the direct child also gets a parent-death signal (``PR_SET_PDEATHSIG`` = SIGKILL), so a launcher
killed outright (SIGKILL, OOM) does not leave its server running. The kernel sends that signal when the
*thread* that forked the child exits, so it is set only when the child is started from the main thread (or
when the caller asks for it explicitly), and never for detached processes. It reaches the direct child only:
the rest of the group is not signalled (tritonserver's python stubs watch their parent and exit by themselves,
removing their shm regions: 1.4-3 s after a SIGKILL of the launcher, measured by tests/test_lifecycle.py).

``pid_alive`` and ``process_start_time`` name one process by pid and start time (``stat_fields`` is the one
reader of ``/proc/PID/stat``); what a killed launcher leaves behind is found and removed by
``serving.leftovers``.
"""
from __future__ import annotations

import atexit
import ctypes
import os
import signal
import subprocess
import sys
import threading
import time
import warnings
from pathlib import Path
from typing import Callable, Sequence

from ..errors import SqueezeTimeError

PR_SET_PDEATHSIG = 1
_POLL = 0.05  # seconds between checks while waiting for a group to go


class ProcessError(SqueezeTimeError, RuntimeError):
    """A supervised process could not start, did not become ready, or could not be stopped.

    ``message`` is the first line, ``tail`` the process's log tail (both in ``str()``), ``returncode`` its
    exit status when known."""

    def __init__(self, message: str, *, tail: str = "", returncode: int | None = None):
        super().__init__(f"{message}\n{tail}" if tail else message)
        self.message = message
        self.tail = tail
        self.returncode = returncode


class ProcessExited(ProcessError):
    """The process exited while it was starting."""


class StartFailed(ProcessError):
    """The early-failure probe reported a failure (e.g. a worker that cannot load its model)."""


class NotReady(ProcessError):
    """The readiness probe did not succeed before the deadline."""


# -- processes by pid: one reader of /proc/PID/stat -----------------------------------------------------------
def proc_pids() -> list[int]:
    """Every pid listed in /proc (empty where there is no /proc)."""
    try:
        return [int(entry) for entry in os.listdir("/proc") if entry.isdigit()]
    except OSError:
        return []


def stat_fields(pid: int) -> list[str]:
    """The fields of /proc/PID/stat after the command name (which may hold spaces and parentheses): ``[0]`` is
    the state (field 3 of proc(5)), ``[2]`` the process group, ``[19]`` the start time. Raises OSError when the
    file cannot be read or is cut short (no such process, no /proc)."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rpartition(")")[2].split()
    if len(fields) < 20:
        raise OSError(f"/proc/{pid}/stat is cut short")
    return fields


def process_start_time(pid: int) -> int | None:
    """The process's start time (clock ticks after boot, /proc/PID/stat field 22): with the pid, it names one
    process even after the pid is reused. None when there is no such process (or no /proc)."""
    try:
        return int(stat_fields(pid)[19])
    except (OSError, ValueError):
        return None


def pid_alive(pid: int, start_time: int | None = None) -> bool:
    """True while process ``pid`` runs (a zombie does not count); with ``start_time``, only if it is still the
    process that started then (not a later one that got the same pid)."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # exists, belongs to someone else
    try:
        fields = stat_fields(pid)
    except FileNotFoundError:
        return not os.path.isdir("/proc/self")  # no /proc: os.kill's answer is all there is
    except OSError:
        return True
    if fields[0] in ("Z", "X"):
        return False
    return start_time is None or int(fields[19]) == int(start_time)


# -- process groups ------------------------------------------------------------------------------------------
def group_pids(pgid: int) -> list[int]:
    """Live (non-zombie) processes of process group ``pgid`` (from /proc; elsewhere ``[pgid]`` while the
    group exists)."""
    if not os.path.isdir("/proc/self"):
        return [pgid] if _group_exists(pgid) else []
    pids = []
    for pid in proc_pids():
        try:
            fields = stat_fields(pid)
        except OSError:
            continue
        if fields[0] not in ("Z", "X") and int(fields[2]) == pgid:
            pids.append(pid)
    return pids


def _group_exists(pgid: int) -> bool:
    """Any member of the group, zombies included."""
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def group_alive(pgid: int) -> bool:
    """True while process group ``pgid`` has a member. A leader this interpreter started is reaped first, so
    that its zombie does not count."""
    proc = _STARTED.get(pgid)
    if proc is not None:
        proc.poll()  # reaps the leader
    return _group_exists(pgid)


def _killpg(pgid: int, sig: int) -> None:
    try:
        os.killpg(pgid, sig)
    except ProcessLookupError:
        pass


def first_line_with(path: str | os.PathLike, markers: tuple[str, ...]) -> str | None:
    """The first line of the log ``path`` that contains one of ``markers``, stripped; None when there is none or
    the file cannot be read (the servers' "this start has failed" lines)."""
    try:
        text = Path(path).read_text(errors="replace")
    except OSError:
        return None
    return next((line.strip() for line in text.splitlines() if any(m in line for m in markers)), None)


def tail_lines(path: str | os.PathLike | None, lines: int = 25) -> str:
    """The last ``lines`` lines of a log file, indented, under a line naming it."""
    if path is None:
        return "(no log)"
    try:
        with open(path, "rb") as f:
            f.seek(0, os.SEEK_END)
            f.seek(max(0, f.tell() - 64 * 1024))
            text = f.read().decode("utf-8", errors="replace")
    except OSError:
        return f"(no log at {path})"
    shown = text.splitlines()[-lines:]
    return f"log {path}:\n" + "\n".join("  " + line for line in shown)


def _parent_death_preexec() -> Callable[[], None] | None:
    """A preexec_fn that makes the child get SIGKILL when the forking thread (this one) exits; None where
    prctl is not available. Everything is resolved before the fork: the child only calls prctl."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        prctl = ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None
    args = (ctypes.c_int(PR_SET_PDEATHSIG), ctypes.c_ulong(signal.SIGKILL), ctypes.c_ulong(0), ctypes.c_ulong(0),
            ctypes.c_ulong(0))
    parent = os.getpid()

    def preexec() -> None:
        try:
            prctl(*args)
            if os.getppid() != parent:  # the launcher died before prctl took effect
                os._exit(1)
        except Exception:  # noqa: BLE001 - never fail a start for want of the safety net
            pass

    return preexec


# -- the supervisor ------------------------------------------------------------------------------------------
_STARTED: dict[int, "ManagedProcess"] = {}  # pgid -> process this interpreter started and has not stopped
_REGISTRY_LOCK = threading.Lock()


class ManagedProcess:
    """One command in its own process group, started, watched and stopped within bounded times.

    command, env, cwd: as for ``subprocess.Popen`` (stdin is /dev/null).
    log_path: stdout and stderr go there (truncated, or appended with ``append_log``); None: /dev/null.
    name: how messages call the process.
    stop_signal: the polite signal of ``stop()``; sent to the leader only, or to the whole group with
        ``signal_group`` (always to the group for a group adopted by pgid).
    stop_timeout, kill_timeout: default bounds of ``stop()``'s polite and SIGKILL phases (seconds).
    tail: a callable returning the text quoted in errors (default: the log file's last lines).
    detached: meant to outlive this interpreter: not stopped at exit, no parent-death signal.
    die_with_parent: the Linux parent-death signal for the direct child; None: on when started from the main
        thread and not detached.
    """

    def __init__(self, command: Sequence[str], *, log_path: str | os.PathLike | None = None,
                 env: dict[str, str] | None = None, cwd: str | os.PathLike | None = None, name: str | None = None,
                 stop_signal: int = signal.SIGTERM, signal_group: bool = False, stop_timeout: float = 15.0,
                 kill_timeout: float = 10.0, append_log: bool = False, tail: Callable[[], str] | None = None,
                 detached: bool = False, die_with_parent: bool | None = None):
        self.command = [str(c) for c in command]
        self.log_path = Path(log_path) if log_path is not None else None
        self.env = env
        self.cwd = cwd
        self.name = name or (Path(self.command[0]).name if self.command else "process")
        self.stop_signal = stop_signal
        self.signal_group = signal_group
        self.stop_timeout = stop_timeout
        self.kill_timeout = kill_timeout
        self.append_log = append_log
        self.detached = detached
        self.die_with_parent = die_with_parent
        self.popen: subprocess.Popen | None = None
        self.pgid: int | None = None
        self._tail = tail
        self._cleanups: list[tuple[Callable, tuple, dict]] = []
        self._lock = threading.RLock()
        self._stopped = False

    @classmethod
    def for_group(cls, pgid: int, **options) -> "ManagedProcess":
        """The process group ``pgid``: the object that started it when this interpreter did, else a new one
        that can watch and stop the group (``options`` as for the constructor, without a command)."""
        with _REGISTRY_LOCK:
            known = _STARTED.get(pgid)
        if known is not None:
            return known
        proc = cls([], **{"name": f"process group {pgid}", **options})
        proc.pgid = pgid
        return proc

    # -- state ----------------------------------------------------------------------------------------------
    @property
    def pid(self) -> int | None:
        """The leader's pid (= the process group id)."""
        return self.pgid

    @property
    def returncode(self) -> int | None:
        """The leader's exit status, once it has exited (only known for a process this object started)."""
        return self.popen.returncode if self.popen is not None else None

    def _reap(self) -> int | None:
        return self.popen.poll() if self.popen is not None else None

    def poll(self) -> int | None:
        """The leader's exit status, or None while it runs (or when it is not this object's child)."""
        return self._reap()

    def alive(self) -> bool:
        """True while the process group has a member (zombies of other parents included)."""
        return self.pgid is not None and not self._stopped and group_alive(self.pgid)

    def _exited(self) -> bool:
        if self.popen is not None:
            return self.popen.poll() is not None
        return not self.alive()

    def add_cleanup(self, fn: Callable, *args, **kwargs) -> None:
        """Call ``fn(*args, **kwargs)`` once, when ``stop()`` has stopped the process (even if it failed to)."""
        self._cleanups.append((fn, args, kwargs))

    # -- start, readiness -----------------------------------------------------------------------------------
    def start(self) -> "ManagedProcess":
        """Start the command in a new session (process group). Raises ProcessError if it cannot run."""
        with self._lock:
            if self.pgid is not None:
                raise ProcessError(f"{self.name} was already started (process group {self.pgid})")
            die = self.die_with_parent
            if die is None:
                die = not self.detached and threading.current_thread() is threading.main_thread()
            preexec = _parent_death_preexec() if die and not self.detached else None
            log = open(self.log_path, "ab" if self.append_log else "wb") if self.log_path else subprocess.DEVNULL
            try:
                self.popen = subprocess.Popen(self.command, env=self.env, cwd=self.cwd, stdin=subprocess.DEVNULL,
                                              stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
                                              preexec_fn=preexec)
            except (OSError, subprocess.SubprocessError) as e:
                raise ProcessError(f"cannot start {self.name} ({self.command[0]}): {e}") from e
            finally:
                if log is not subprocess.DEVNULL:
                    log.close()  # the child has its own descriptor
            self.pgid = self.popen.pid
            with _REGISTRY_LOCK:
                _STARTED[self.pgid] = self
        return self

    def wait_ready(self, probe: Callable[[], bool | str | None], timeout: float, *,
                   failure: Callable[[], str | None] | None = None, interval: float = 0.25,
                   stop_on_error: bool = True) -> None:
        """Return once ``probe()`` returns True; a string it returns means "not yet" and says why (quoted if
        the deadline passes). Raises ProcessExited if the process exits, StartFailed when ``failure()`` returns
        a reason, NotReady after ``timeout`` seconds; each with the log tail. With ``stop_on_error`` the
        process is stopped (cleanups run) before any exception leaves, KeyboardInterrupt included."""
        deadline = time.monotonic() + timeout
        last = None
        try:
            while True:
                if self._exited():
                    code = self.returncode
                    status = f"with status {code}" if code is not None else "(its process group is gone)"
                    raise ProcessExited(f"{self.name} exited {status} while starting", tail=self.log_tail(),
                                        returncode=code)
                reason = failure() if failure is not None else None
                if reason:
                    raise StartFailed(f"{self.name} failed while starting: {reason}", tail=self.log_tail())
                result = probe()
                if result is True:
                    return
                if isinstance(result, str) and result:
                    last = result
                left = deadline - time.monotonic()
                if left <= 0:
                    raise NotReady(f"{self.name} was not ready within {timeout:g} s" + (f" ({last})" if last else "")
                                   + ("; stopped it" if stop_on_error else ""), tail=self.log_tail())
                self._sleep(min(interval, left))
        except BaseException:
            if stop_on_error:
                try:
                    self.stop()
                except ProcessError:
                    pass  # the readiness error is the one to report
            raise

    def _sleep(self, seconds: float) -> None:
        """Sleep, waking up early when this object's child exits."""
        if self.popen is not None:
            try:
                self.popen.wait(timeout=seconds)
            except subprocess.TimeoutExpired:
                pass
        else:
            time.sleep(seconds)

    def wait(self, timeout: float | None = None) -> int | None:
        """Block until the leader (a group adopted by pgid: the whole group) is gone; its status, or None on
        timeout."""
        if self.popen is not None:
            try:
                return self.popen.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                return None
        until = None if timeout is None else time.monotonic() + timeout
        while self.alive():
            if until is not None and time.monotonic() >= until:
                break
            time.sleep(_POLL if until is not None else 0.5)
        return None

    def log_tail(self, lines: int = 25) -> str:
        """What errors quote: the caller's ``tail()``, else the log file's last ``lines`` lines."""
        if self._tail is not None:
            try:
                return self._tail()
            except Exception as e:  # noqa: BLE001 - a broken tail must not hide the real error
                return f"(cannot read the log: {e})"
        return tail_lines(self.log_path, lines)

    # -- stop -----------------------------------------------------------------------------------------------
    def stop(self, timeout: float | None = None, *, kill_timeout: float | None = None) -> int | None:
        """Stop the whole process group and run the cleanups (once); return the leader's exit status when
        known. The polite ``stop_signal`` first, up to ``timeout`` s for the leader (with ``signal_group`` or
        for an adopted group: every member) to exit; then SIGKILL to the group and up to ``kill_timeout`` s
        for it to be gone. Raises ProcessError only if live members remain after that."""
        timeout = self.stop_timeout if timeout is None else timeout
        kill_timeout = self.kill_timeout if kill_timeout is None else kill_timeout
        with self._lock:
            try:
                if self.pgid is not None and not self._stopped:
                    self._terminate(self.pgid, timeout, kill_timeout)
            finally:
                self._run_cleanups()
        return self.returncode

    def _terminate(self, pgid: int, timeout: float, kill_timeout: float) -> None:
        whole_group = self.signal_group or self.popen is None
        if whole_group:
            if group_pids(pgid):
                _killpg(pgid, self.stop_signal)
                until = time.monotonic() + timeout
                while group_pids(pgid) and time.monotonic() < until:
                    self._reap()
                    time.sleep(_POLL)
        elif self.popen.poll() is None:
            try:
                self.popen.send_signal(self.stop_signal)
                self.popen.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                pass
        _killpg(pgid, signal.SIGKILL)  # what is left: the leader if it ignored us, its children in any case
        until = time.monotonic() + kill_timeout
        while True:
            self._reap()
            if not _group_exists(pgid) or time.monotonic() >= until:
                break
            time.sleep(_POLL)
        left = group_pids(pgid)  # zombies of other parents may linger a moment: they run nothing
        if not left:
            self._stopped = True
            with _REGISTRY_LOCK:
                if _STARTED.get(pgid) is self:
                    del _STARTED[pgid]
            return
        raise ProcessError(f"{self.name} (process group {pgid}) still has processes {left} after SIGKILL "
                           f"and {kill_timeout:g} s")

    def _run_cleanups(self) -> None:
        while self._cleanups:
            fn, args, kwargs = self._cleanups.pop(0)
            try:
                fn(*args, **kwargs)
            except Exception as e:  # noqa: BLE001 - the other cleanups still run
                warnings.warn(f"cleanup {getattr(fn, '__name__', fn)} of {self.name} failed: {e}", RuntimeWarning,
                              stacklevel=3)

    def __enter__(self) -> "ManagedProcess":
        return self.start() if self.pgid is None else self

    def __exit__(self, *exc) -> None:
        self.stop()

    def __repr__(self) -> str:
        return f"<ManagedProcess {self.name} pgid={self.pgid}{' detached' if self.detached else ''}>"


@atexit.register
def _stop_at_exit() -> None:
    """The safety net: stop what this interpreter started and did not detach."""
    with _REGISTRY_LOCK:
        running = [p for p in _STARTED.values() if not p.detached]
    for proc in running:
        try:
            proc.stop()
        except Exception:  # noqa: BLE001 - at exit, stop the others regardless
            pass


__all__ = ["ManagedProcess", "NotReady", "ProcessError", "ProcessExited", "StartFailed", "first_line_with",
           "group_alive", "group_pids", "pid_alive", "proc_pids", "process_start_time", "stat_fields", "tail_lines"]
