"""Do the plan's floors, and what its target will take, fit this host? Checked before a run starts.

The guard lets a serve target start only while MemAvailable is above the WARN floor. A floor at or above
the host's MemTotal can never be cleared: today's runner would wait `restart_wait_s` (600 s by default) and
then fail the arm. That is an error. MemAvailable below WARN right now (a host busy with something else)
may clear: a warning that the first start will wait for it. Floors left out are sized from the host
(`default_floors`) and always fit.
"""

from __future__ import annotations

from dataclasses import dataclass

from engine.units import GIB, gib_text
from runners.host.meminfo import MemInfo
from runners.plan.sections import WatchdogSpec
from runners.plan.vllm_memory import MemoryAsk
from runners.watchdog.policy import default_floors


@dataclass(frozen=True)
class FloorFit:
    """`errors` stop the plan; `warnings` are printed. Each names the watchdog field and the host figure."""

    errors: list[str]
    warnings: list[str]


def floor_fit(spec: WatchdogSpec, meminfo: MemInfo) -> FloorFit:
    """Whether `spec`'s floors can be cleared on the host `meminfo` describes (unknown figures: no finding)."""
    if spec.warn_gib is None or meminfo.total is None:
        return FloorFit([], [])
    total_gib = meminfo.total / GIB
    too_high = [
        (name, value)
        for name, value in (("warn_gib", spec.warn_gib), ("abort_gib", spec.abort_gib), ("kill_gib", spec.kill_gib))
        if value is not None and value >= total_gib
    ]
    if too_high:
        fields = ", ".join(f"watchdog.{name} = {gib_text(value)}" for name, value in too_high)
        return FloorFit(
            [
                f"{fields}: not below this host's MemTotal ({gib_text(total_gib)} GiB), so MemAvailable can never "
                "clear it and no serve target could start (the runner would wait watchdog.restart_wait_s = "
                f"{spec.restart_wait_s:g} s, then fail). Lower the floors, or leave all three out to size them "
                "from the host"
            ],
            [],
        )
    if meminfo.available is not None and meminfo.available / GIB <= spec.warn_gib:
        return FloorFit(
            [],
            [
                f"watchdog.warn_gib = {gib_text(spec.warn_gib)}: MemAvailable is {gib_text(meminfo.available / GIB)} "
                f"GiB now, below it; the first start waits up to watchdog.restart_wait_s = {spec.restart_wait_s:g} s "
                "for memory to rise above WARN"
            ],
        )
    return FloorFit([], [])


@dataclass(frozen=True)
class MemoryNeed:
    """What a vLLM target takes on a unified-memory host and what must stay free beside it, in GiB."""

    ask: MemoryAsk
    total_gib: float
    need_gib: float  # fraction x MemTotal
    warn_gib: float  # the WARN floor the guard will judge by
    short_of_free: bool  # MemFree < need <= MemAvailable - WARN: only the page cache stands in the way

    @property
    def text(self) -> str:
        """`0.9 x MemTotal 119.7 GiB = 107.7 GiB (serve.command[5])`."""
        return (f"{self.ask.fraction:g} x MemTotal {gib_text(self.total_gib)} GiB = {gib_text(self.need_gib)} GiB "
                f"({self.ask.where})")  # fmt: skip


def memory_need(spec: WatchdogSpec, meminfo: MemInfo, ask: MemoryAsk | None, unified: bool | None) -> MemoryNeed | None:
    """What the target will take on this host; None when it cannot be said (not vLLM, not unified memory, or
    /proc/meminfo unreadable): on a discrete GPU the fraction is of the device's memory, not the host's."""
    if ask is None or not unified or meminfo.total is None or meminfo.available is None:
        return None
    total = meminfo.total / GIB
    warn = spec.warn_gib if spec.warn_gib is not None else default_floors(meminfo.total).warn_gib
    need = ask.fraction * total
    short = meminfo.free is not None and meminfo.free / GIB < need <= meminfo.available / GIB - warn
    return MemoryNeed(ask, total, need, warn, short)


def need_fit(need: MemoryNeed, meminfo: MemInfo) -> FloorFit:
    """An error when MemAvailable cannot hold what the target takes plus the WARN floor; a warning when only
    the page cache (MemFree short, MemAvailable enough) stands in the way of vLLM's start-up check."""
    available = (meminfo.available or 0) / GIB
    if available < need.need_gib + need.warn_gib:
        most = max(0.0, (available - need.warn_gib) / need.total_gib)
        return FloorFit(
            [
                f"the serve target asks for {need.text}; with the WARN floor ({gib_text(need.warn_gib)} GiB) that "
                f"needs {gib_text(need.need_gib + need.warn_gib)} GiB MemAvailable and this host has "
                f"{gib_text(available)} GiB: the guard would stop it while it loads. Lower "
                f"--gpu-memory-utilization to {most:.2f} or less, or free memory first"
            ],
            [],
        )
    if need.short_of_free:
        free = (meminfo.free or 0) / GIB
        return FloorFit(
            [],
            [
                f"MemFree is {gib_text(free)} GiB, below the {gib_text(need.need_gib)} GiB the target asks for "
                f"({need.text}), while MemAvailable ({gib_text(available)} GiB) holds it: the rest is page cache, "
                "and a start-up check that reads free memory (vLLM's on unified memory) may refuse. Set "
                "watchdog.drop_page_cache = true (root) to drop it before each start, or drop it yourself"
            ],
        )
    return FloorFit([], [])
