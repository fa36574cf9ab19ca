"""What killed Triton launchers leave, removed by the next one (``TritonServer.start`` calls ``clean_stale``).

A launcher killed outright (SIGKILL, OOM) cannot clean up: tritonserver dies with it (parent-death signal),
its python stubs notice their dead parent and exit within seconds, but the work directory (and, when the
stubs were killed too, their shm regions) stay. ``clean_stale`` removes shm regions whose prefix names a dead
launcher pid, and ``squeezetime-triton-*`` / ``squeezetime-demo-repo-*`` temp directories whose owner file
names a dead process (``serving.leftovers``), never anything a live process still mentions.
"""
from __future__ import annotations

import os
from pathlib import Path

from ..leftovers import clean_stale_dirs, processes_mentioning
from .shm import SHM_PREFIX, remove_shm_regions, stale_shm_prefixes

WORKDIR_PREFIX = "squeezetime-triton-"
DEMO_REPO_PREFIX = "squeezetime-demo-repo-"  # `squeezetime serve --demo`'s repository (an owned temp dir too)


def clean_stale(tmpdir: str | os.PathLike | None = None) -> list[str]:
    """Remove what killed launchers left: their work and demo-repository temp directories (owner dead, no live
    process mentions them; the shm regions named in the owner file go with them) and shm regions of dead
    launchers. Returns the removed paths."""
    removed: list[str] = []

    def regions_of(path: Path, owner: dict) -> None:
        prefix = owner.get("shm_prefix")
        if isinstance(prefix, str) and prefix.startswith(SHM_PREFIX) and not processes_mentioning(prefix):
            removed.extend(remove_shm_regions(prefix))

    removed += [str(p) for p in clean_stale_dirs((WORKDIR_PREFIX, DEMO_REPO_PREFIX), tmpdir, on_remove=regions_of)]
    for prefix in stale_shm_prefixes():
        removed.extend(remove_shm_regions(prefix))
    return removed


__all__ = ["DEMO_REPO_PREFIX", "WORKDIR_PREFIX", "clean_stale"]
