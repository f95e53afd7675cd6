"""The memory cgroup of a process (v1 or v2): its usage, limit, pressure and the OOM kills the kernel counted in it.

A container's cgroup disappears when the container ends, so its counters must be read while it
runs. Values that cannot be read are None (unknown), never 0.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from runners.host.psi import Pressure, parse_count, read_psi

CGROUP_ROOT = Path("/sys/fs/cgroup")
# v1 writes "no limit" as PAGE_COUNTER_MAX pages in bytes (9223372036854771712 with 4 KiB pages).
V1_UNLIMITED = 2**60


@dataclass(frozen=True)
class CgroupMemory:
    """One reading of a memory cgroup. Bytes; None where unknown. `limit_bytes` is also None when unlimited;
    `pressure` is None on v1 (no PSI there) or where PSI is disabled."""

    version: int  # 1 or 2
    usage_bytes: int | None  # v1 memory.usage_in_bytes, v2 memory.current
    limit_bytes: int | None  # v1 memory.limit_in_bytes, v2 memory.max
    oom_kills: int | None  # v1 memory.oom_control, v2 memory.events: oom_kill
    pressure: Pressure | None  # v2 memory.pressure


def _read_count(path: Path) -> int | None:
    try:
        return parse_count(path.read_text(errors="replace"))
    except OSError:
        return None


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

    def read(self) -> CgroupMemory:
        """Usage, limit, OOM kills and (v2) memory pressure, each None where it cannot be read."""
        if self.version == 1:
            usage = _read_count(self.path / "memory.usage_in_bytes")
            limit = _read_count(self.path / "memory.limit_in_bytes")
            if limit is not None and limit >= V1_UNLIMITED:
                limit = None
            pressure = None
        else:
            usage = _read_count(self.path / "memory.current")
            limit = _read_count(self.path / "memory.max")  # "max" (unlimited) is not a count: None
            pressure = read_psi(self.path / "memory.pressure")
        return CgroupMemory(self.version, usage, limit, self.oom_kills(), pressure)


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
