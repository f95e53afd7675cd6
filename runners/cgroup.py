"""The memory cgroup of a process (v1 or v2) and the OOM kills the kernel counted in it.

A container's cgroup disappears when the container ends, so its counters must be read while it
runs. Values that cannot be read are None (unknown), never 0.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

CGROUP_ROOT = Path("/sys/fs/cgroup")


@dataclass(frozen=True)
class MemoryCgroup:
    """A memory cgroup directory and which interface it speaks."""

    path: Path
    version: int  # 1 or 2

    def oom_kills(self) -> int | None:
        """Processes the kernel OOM-killed in this cgroup (v1 memory.oom_control, v2 memory.events)."""
        name = "memory.oom_control" if self.version == 1 else "memory.events"
        try:
            text = (self.path / name).read_text()
        except OSError:
            return None
        for line in text.splitlines():
            key, _, value = line.partition(" ")
            if key == "oom_kill" and value.strip().isdigit():
                return int(value)
        return None


def memory_cgroup(pid: int, proc: Path = Path("/proc"), root: Path = CGROUP_ROOT) -> MemoryCgroup | None:
    """The memory cgroup `pid` lives in, or None when the process or its cgroup cannot be found."""
    try:
        lines = (proc / str(pid) / "cgroup").read_text().splitlines()
    except OSError:
        return None
    v2_path = None
    for line in lines:
        _, controllers, path = line.split(":", 2)
        if "memory" in controllers.split(","):
            candidate = root / "memory" / path.lstrip("/")
            return MemoryCgroup(candidate, 1) if candidate.is_dir() else None
        if controllers == "":
            v2_path = path
    if v2_path is not None:
        candidate = root / v2_path.lstrip("/")
        if (candidate / "memory.events").exists():
            return MemoryCgroup(candidate, 2)
    return None
