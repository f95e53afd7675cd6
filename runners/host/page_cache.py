"""Dropping the host's page cache (opt-in, root only): what a free-memory start-up check needs on a GB10.

vLLM's start-up check on unified memory compares what it asks for with the *free* memory it is told about,
which on a GB10 follows MemFree, not MemAvailable: a host whose memory is mostly page cache (a model just
read from disk) can refuse a start that MemAvailable would allow. `sync` then `1 > /proc/sys/vm/drop_caches`
(clean page cache only: no dentries or inodes, nothing dirty lost) turns that cache back into free memory.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from engine.units import GIB
from runners.host.meminfo import read_meminfo

DROP_CACHES = Path("/proc/sys/vm/drop_caches")


@dataclass(frozen=True)
class CacheDrop:
    """What a drop did: `dropped`, MemFree before and after (GiB, None where unreadable), and why not."""

    dropped: bool
    free_before_gib: float | None
    free_after_gib: float | None
    reason: str


def _free_gib(proc: Path) -> float | None:
    free = read_meminfo(proc).free
    return None if free is None else round(free / GIB, 2)


def drop_page_cache(control: Path = DROP_CACHES, proc: Path = Path("/proc"), euid: int | None = None) -> CacheDrop:
    """Sync, then drop the clean page cache; never raises (not root, a read-only /proc/sys: `reason` says)."""
    before = _free_gib(proc)
    if (os.geteuid() if euid is None else euid) != 0:
        return CacheDrop(False, before, before, "not root: only root may drop the page cache")
    os.sync()
    try:
        control.write_text("1\n")
    except OSError as exc:
        return CacheDrop(False, before, _free_gib(proc), f"cannot write {control}: {exc.strerror or exc}")
    return CacheDrop(True, before, _free_gib(proc), "")
