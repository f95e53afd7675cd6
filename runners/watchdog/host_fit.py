"""Do the plan's memory floors fit this host? Checked by `validate` and before a run starts, not after a wait.

The guard lets a serve target start only while MemAvailable is above the WARN floor. A floor at or above
the host's MemTotal can never be cleared: today's runner would wait `restart_wait_s` (600 s by default) and
then fail the arm. That is an error. MemAvailable below WARN right now (a host busy with something else)
may clear: a warning that the first start will wait for it. Floors left out are sized from the host
(`default_floors`) and always fit.
"""

from __future__ import annotations

from dataclasses import dataclass

from runners.host.meminfo import MemInfo
from runners.plan.sections import WatchdogSpec
from runners.watchdog.policy import GIB


@dataclass(frozen=True)
class FloorFit:
    """`errors` stop the plan; `warnings` are printed. Each names the watchdog field and the host figure."""

    errors: list[str]
    warnings: list[str]


def gib_text(value: float) -> str:
    """A GiB figure for people: two decimals at most (`2.94`, `16`, `1.5`)."""
    return f"{round(value, 2):g}"


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
