"""This process's CPU with the console attached to a steady soak (1 event and 1 guard record per second)."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from pathlib import Path

import psutil

from bench.console_bench.harness import DRAIN_DEADLINE_S, OPEN_DEADLINE_S, AttachedConsole
from bench.console_bench.metrics import TARGET_IDLE_CPU_PCT, cpu_percent
from bench.console_bench.workdir import workdir as workdir_for
from runners.run.rundir import RunnerLock
from runners.testbed.soak_writer import RunDirWriter, live_state, synthetic_run
from runners.testbed.synthetic_soak import SyntheticSoak

SETTLE_S = 2.0  # after attaching, before CPU is counted (start-up is not idle)


@dataclass
class IdleCpu:
    """This process's CPU use with the console attached to a steady soak."""

    seconds: float
    event_rate_hz: float
    record_rate_hz: float
    wall_s: float
    cpu_s: float
    cpu_pct: float  # the whole process: console, its tail thread and the bench writer
    writer_cpu_pct: float  # the bench writer thread alone (included in cpu_pct)
    events_written: int
    events_folded: int
    frames: int

    @property
    def passed(self) -> bool:
        """The whole process under target (the writer is included, so the console's share is lower)."""
        return self.cpu_pct < TARGET_IDLE_CPU_PCT and self.events_folded == self.events_written


async def _idle_cpu(seconds: float, rate_hz: float, workdir: Path) -> IdleCpu:
    run = synthetic_run(workdir)
    soak = SyntheticSoak.for_run(run)
    live_state(run, soak)
    console = AttachedConsole(run)
    folds = console.folds
    process = psutil.Process()
    lock = RunnerLock(run)
    lock.acquire()
    try:
        async with console.run_test():
            limit_s = OPEN_DEADLINE_S + SETTLE_S + seconds  # stopped when the window ends, long before this
            writer = RunDirWriter(run, soak, rate_hz, rate_hz, int(limit_s * rate_hz) + 1, limit_s)
            writer.start()
            try:
                await console.until(lambda: folds.events > 0, OPEN_DEADLINE_S)
                await asyncio.sleep(SETTLE_S)
                writer_cpu0 = writer.cpu_s
                cpu0, t0 = _cpu_s(process), time.monotonic()
                await asyncio.sleep(seconds)
                cpu_s, wall_s = _cpu_s(process) - cpu0, time.monotonic() - t0
                writer_cpu_s = writer.cpu_s - writer_cpu0
            finally:
                writer.stop()
            await console.until(lambda: folds.events >= writer.events_written, DRAIN_DEADLINE_S)
            folded, frames = folds.events, console.frames.count
    finally:
        lock.release()
    return IdleCpu(
        seconds=seconds, event_rate_hz=rate_hz, record_rate_hz=rate_hz, wall_s=wall_s, cpu_s=cpu_s,
        cpu_pct=cpu_percent(cpu_s, wall_s), writer_cpu_pct=cpu_percent(writer_cpu_s, wall_s),
        events_written=writer.events_written, events_folded=folded, frames=frames,
    )  # fmt: skip


def idle_cpu(seconds: float = 30, rate_hz: float = 1.0, workdir: Path | None = None) -> IdleCpu:
    """CPU of this process, in % of one core, over `seconds` with the console attached to a soak
    writing `rate_hz` events and guard records per second (after SETTLE_S of start-up):
    100 x (user + system CPU s) / wall s, psutil's cpu_times of the whole process."""
    with workdir_for(workdir) as base:
        return asyncio.run(_idle_cpu(float(seconds), float(rate_hz), base))


def _cpu_s(process: psutil.Process) -> float:
    times = process.cpu_times()
    return times.user + times.system
