"""This process's RSS after the console has folded a long soak history (8 hours by default)."""

from __future__ import annotations

import asyncio
import resource
import time
from dataclasses import dataclass
from pathlib import Path

import psutil

from bench.console_bench.harness import AttachedConsole
from bench.console_bench.metrics import MB, TARGET_RSS_MB
from bench.console_bench.workdir import workdir as workdir_for
from runners.testbed.soak_writer import live_state, synthetic_run, write_history
from runners.testbed.synthetic_soak import SyntheticSoak

FOLD_DEADLINE_S = 300.0  # the history is folded


@dataclass
class MemoryAfterSoak:
    """This process's RSS around attaching the console to a finished synthetic soak history."""

    hours: float
    event_rate_hz: float
    sample_rate_hz: float
    events_written: int
    events_folded: int
    records_written: int
    records_folded: int
    history_mb: float  # events.jsonl + watchdog.jsonl
    fold_s: float | None  # the console created -> everything folded; None: not within FOLD_DEADLINE_S
    rss_before_mb: float
    rss_after_mb: float
    rss_delta_mb: float
    peak_rss_mb: float  # this process's peak (ru_maxrss) so far

    @property
    def passed(self) -> bool:
        """RSS under target with the whole history folded."""
        return (
            self.rss_after_mb < TARGET_RSS_MB and self.events_folded == self.events_written
            and self.records_folded == self.records_written
        )  # fmt: skip


async def _memory_after_soak(
    hours: float, event_rate_hz: float, sample_rate_hz: float, workdir: Path
) -> MemoryAfterSoak:
    run = synthetic_run(workdir)
    soak = SyntheticSoak.for_run(run)
    n_events = max(1, int(hours * 3600 * event_rate_hz))
    soak.progress_per_step = SyntheticSoak.events_for(n_events, len(soak.steps))
    soak.level_every = max(2, int(3600 * event_rate_hz))  # about one level change an hour
    history = write_history(run, soak, hours, event_rate_hz, sample_rate_hz)
    live_state(run, soak)
    rss_before = _rss()
    console = AttachedConsole(run)
    folds = console.folds
    t0 = time.monotonic()
    async with console.run_test():
        done = await console.until(
            lambda: folds.events >= history.events and folds.records >= history.records, FOLD_DEADLINE_S, 0.1
        )
        fold_s = time.monotonic() - t0 if done else None
        await asyncio.sleep(1.0)  # a few more frames and polls of the steady state
        rss_after = _rss()
        events_folded, records_folded = folds.events, folds.records
    return MemoryAfterSoak(
        hours=hours, event_rate_hz=event_rate_hz, sample_rate_hz=sample_rate_hz, events_written=history.events,
        events_folded=events_folded, records_written=history.records, records_folded=records_folded,
        history_mb=history.bytes / MB, fold_s=fold_s, rss_before_mb=rss_before / MB, rss_after_mb=rss_after / MB,
        rss_delta_mb=(rss_after - rss_before) / MB, peak_rss_mb=max(_peak_rss(), rss_after) / MB,
    )  # fmt: skip


def memory_after_soak(
    hours: float = 8, event_rate_hz: float = 1.0, sample_rate_hz: float = 0.2, workdir: Path | None = None
) -> MemoryAfterSoak:
    """RSS of this process after the console folded `hours` of soak history.

    The history (hours x 3600 x event_rate_hz events, mostly step_progress, and hours x 3600 x
    sample_rate_hz guard records, 0.2 Hz being the guard's 5 s) is written first; RSS is read
    before the console is created and again 1 s after it has folded every event and record.
    Run it first in a fresh process: RSS only shrinks when the allocator gives memory back.
    """
    with workdir_for(workdir) as base:
        return asyncio.run(_memory_after_soak(float(hours), float(event_rate_hz), float(sample_rate_hz), base))


def _rss() -> int:
    return psutil.Process().memory_info().rss


def _peak_rss() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # Linux: KiB
