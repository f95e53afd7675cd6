"""/proc/meminfo: the host's memory in bytes (MemAvailable is what the watchdog's floors judge).

On the GB10 the GPU allocates from the same memory, so MemAvailable is the figure that matters. A value
that cannot be read is None, never 0; MemAvailable is never estimated.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from runners.host.psi import parse_count

KIB = 1024

# /proc/meminfo key -> MemInfo field; every one of them is in kB.
_MEMINFO_KEYS = {
    "MemTotal": "total",
    "MemAvailable": "available",
    "MemFree": "free",
    "SwapFree": "swap_free",
    "AnonPages": "anon",
    "Shmem": "shmem",
    "Hugetlb": "hugetlb",
}


@dataclass(frozen=True)
class MemInfo:
    """The /proc/meminfo figures the watchdog uses, in bytes; None where the file did not say."""

    total: int | None = None  # MemTotal
    available: int | None = None  # MemAvailable (kernel >= 3.14; never estimated here)
    swap_free: int | None = None  # SwapFree
    anon: int | None = None  # AnonPages
    shmem: int | None = None  # Shmem
    hugetlb: int | None = None  # Hugetlb, else HugePages_Total * Hugepagesize
    free: int | None = None  # MemFree: what some start-up checks read (vLLM's on unified memory), never judged


def _kib_field(value: str) -> int | None:
    """`24268380 kB` (or a bare `24268380`, taken as the kernel's kB) in bytes; any other unit or text: None."""
    parts = value.split()
    if len(parts) == 2 and parts[1].lower() == "kb":
        parts = parts[:1]
    if len(parts) != 1:
        return None
    count = parse_count(parts[0])
    return None if count is None else count * KIB


def parse_meminfo(text: str) -> MemInfo:
    """The `Key:   value kB` lines of /proc/meminfo in bytes; an odd line or value leaves its field None.

    `Hugetlb` (all huge page sizes) is used where the kernel has it; otherwise the default size's pool,
    `HugePages_Total * Hugepagesize`. An old kernel without MemAvailable gives `available` None.
    """
    fields: dict[str, int | None] = {}
    raw: dict[str, str] = {}
    for line in text.splitlines():
        key, sep, value = line.partition(":")
        key = key.strip()
        if sep and key not in raw:
            raw[key] = value
    for key, name in _MEMINFO_KEYS.items():
        fields[name] = _kib_field(raw[key]) if key in raw else None
    if "Hugetlb" not in raw:
        pages = parse_count(raw.get("HugePages_Total", ""))
        page_size = _kib_field(raw.get("Hugepagesize", ""))
        fields["hugetlb"] = None if pages is None or page_size is None else pages * page_size
    return MemInfo(**fields)


def read_meminfo(proc: Path = Path("/proc")) -> MemInfo:
    """`proc`/meminfo parsed; every field None when the file cannot be read."""
    try:
        text = (proc / "meminfo").read_text(errors="replace")
    except OSError:
        return MemInfo()
    return parse_meminfo(text)


def read_oom_kill_count(proc: Path = Path("/proc")) -> int | None:
    """The host's count of processes the kernel OOM killer ended (`oom_kill` in /proc/vmstat, kernel 4.13+)."""
    try:
        text = (proc / "vmstat").read_text(errors="replace")
    except OSError:
        return None
    for line in text.splitlines():
        key, _, value = line.partition(" ")
        if key == "oom_kill":
            return parse_count(value.strip())
    return None
