"""What a killed launcher leaves behind (temp directories, with their shared-memory files) and how a later
launcher finds and removes it.

A directory made with ``owned_tempdir`` holds an owner file (pid, process start time, host, and whatever the
maker adds, e.g. its shm prefix). ``clean_stale_dirs`` removes such directories only when their owner is dead
*and* no live process names the directory in its command line or works in it (``processes_mentioning``); a
directory without an owner file is never touched.
"""
from __future__ import annotations

import json
import os
import shutil
import socket
import tempfile
import warnings
from pathlib import Path
from typing import Callable, Sequence

from .supervisor import pid_alive, proc_pids, process_start_time

OWNER_FILE = ".squeezetime-owner.json"


def processes_mentioning(text: str, *, cwd_under: str | os.PathLike | None = None) -> list[int]:
    """Live processes whose command line contains ``text``, or (``cwd_under``) whose working directory is that
    directory or below it. Processes whose details cannot be read are not listed."""
    if not os.path.isdir("/proc/self"):
        return []
    needle = os.fsencode(text)
    under = os.path.realpath(cwd_under) if cwd_under is not None else None
    found = []
    for pid in proc_pids():
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                hit = needle in f.read()
            if not hit and under is not None:
                cwd = os.readlink(f"/proc/{pid}/cwd")
                hit = cwd == under or cwd.startswith(under + os.sep)
        except OSError:
            continue
        if hit and pid_alive(pid):
            found.append(pid)
    return found


def write_owner(directory: str | os.PathLike, **extra) -> Path:
    """Mark ``directory`` as this process's: ``OWNER_FILE`` with pid, start time, host and ``extra``."""
    path = Path(directory) / OWNER_FILE
    owner = {"pid": os.getpid(), "start_time": process_start_time(os.getpid()), "host": socket.gethostname(),
             **extra}
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(owner))
    os.replace(tmp, path)
    return path


def read_owner(directory: str | os.PathLike) -> dict | None:
    """The owner file of ``directory``, or None (none, unreadable, not ours)."""
    try:
        owner = json.loads((Path(directory) / OWNER_FILE).read_text())
    except (OSError, ValueError):
        return None
    return owner if isinstance(owner, dict) and isinstance(owner.get("pid"), int) else None


def owner_alive(owner: dict) -> bool:
    """The owner process still runs. An owner on another host (a shared temp dir) counts as alive: it cannot be
    checked from here."""
    if owner.get("host") not in (None, socket.gethostname()):
        return True
    return pid_alive(owner["pid"], owner.get("start_time"))


def owned_tempdir(prefix: str, dir: str | os.PathLike | None = None, **extra) -> Path:
    """``tempfile.mkdtemp(prefix=...)`` with an owner file, so that ``clean_stale_dirs`` can tell when it was
    left behind."""
    path = Path(tempfile.mkdtemp(prefix=prefix, dir=dir))
    write_owner(path, **extra)
    return path


def clean_stale_dirs(prefixes: Sequence[str], parent: str | os.PathLike | None = None,
                     on_remove: Callable[[Path, dict], None] | None = None) -> list[Path]:
    """Remove the directories ``parent/<prefix>*`` (default: the temp dir) that this user owns, whose owner
    file names a dead process and that no live process mentions (command line or working directory). A
    directory without an owner file is never touched (its maker may be between mkdtemp and writing it).
    ``on_remove(path, owner)`` runs first for each. Returns what was removed."""
    parent = Path(parent or tempfile.gettempdir())
    removed = []
    try:
        entries = sorted(parent.iterdir())
    except OSError:
        return removed
    for path in entries:
        if not path.name.startswith(tuple(prefixes)):
            continue
        try:
            st = path.lstat()
        except OSError:
            continue
        if not (os.path.isdir(path) and not path.is_symlink()) or st.st_uid != os.getuid():
            continue
        owner = read_owner(path)
        if owner is None or owner_alive(owner) or processes_mentioning(str(path), cwd_under=path):
            continue
        if on_remove is not None:
            try:
                on_remove(path, owner)
            except Exception as e:  # noqa: BLE001 - the directory still goes
                warnings.warn(f"cleaning up after {path} failed: {e}", RuntimeWarning, stacklevel=2)
        shutil.rmtree(path, ignore_errors=True)
        if not path.exists():
            removed.append(path)
    return removed


__all__ = ["OWNER_FILE", "clean_stale_dirs", "owned_tempdir", "owner_alive", "processes_mentioning", "read_owner",
           "write_owner"]
