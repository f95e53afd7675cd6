"""Key press to frame latency and event backlog of the console tailing a soak at 2,000 events/s."""

from __future__ import annotations

import asyncio
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from bench.console_bench.harness import DRAIN_DEADLINE_S, OPEN_DEADLINE_S, AttachedConsole, FoldCounter
from bench.console_bench.metrics import TARGET_KEY_P95_MS, backlog_grew, least_squares_slope
from bench.console_bench.workdir import workdir as workdir_for
from console.screens.gates_screen import GatesScreen
from runners.replay.metrics import percentile
from runners.run.rundir import RunnerLock
from runners.testbed.soak_writer import RunDirWriter, live_state, synthetic_run
from runners.testbed.synthetic_soak import SyntheticSoak

KEY_EVERY_S = 0.5  # one key press per interval: the gates screen opens, then closes
BACKLOG_EVERY_S = 0.1
STOP_DEADLINE_S = 10.0


class BacklogSampler:
    """A thread that records (s since start, events written - events folded) every BACKLOG_EVERY_S until
    the writer has finished, stop() or `max_seconds`. A thread, not a task on the app's loop: a console
    that falls behind would starve a task exactly when the backlog matters."""

    def __init__(self, writer: RunDirWriter, folds: FoldCounter, max_seconds: float) -> None:
        self.writer, self.folds, self.max_seconds = writer, folds, max_seconds
        self.samples: list[tuple[float, int]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="console-bench-backlog", daemon=True)

    def start(self) -> None:
        """Start sampling."""
        self._thread.start()

    def stop(self) -> None:
        """Stop and join (bounded)."""
        self._stop.set()
        self._thread.join(STOP_DEADLINE_S)
        if self._thread.is_alive():
            raise RuntimeError(f"the backlog sampler did not stop within {STOP_DEADLINE_S} s")

    def _run(self) -> None:
        t0 = time.monotonic()
        while not self._stop.is_set() and time.monotonic() - t0 < self.max_seconds:
            finished = self.writer.finished
            self.samples.append((time.monotonic() - t0, self.writer.events_written - self.folds.events))
            if finished:
                break
            self._stop.wait(BACKLOG_EVERY_S)


@dataclass
class Responsiveness:
    """Key latency and backlog while events arrive at `rate_hz`."""

    rate_hz: float
    seconds: float
    events_written: int
    events_folded: int  # after the drain
    key_presses: int
    keys_missed: int  # no frame of the new screen within KEY_DEADLINE_S
    key_p50_ms: float | None
    key_p95_ms: float | None
    key_max_ms: float | None
    backlog_max: int
    backlog_slope_per_s: float | None
    backlog_grew: bool
    drain_s: float | None  # writer stopped -> every written event folded; None: not within DRAIN_DEADLINE_S
    achieved_rate_hz: float
    frames: int
    writer_cpu_s: float
    latencies_ms: list[float] = field(default_factory=list)
    backlog_samples: list[tuple[float, int]] = field(default_factory=list)  # (s since the writer started, backlog)

    @property
    def passed(self) -> bool:
        """p95 key latency under target, no key missed, backlog not growing, everything folded."""
        return (
            self.key_p95_ms is not None and self.key_p95_ms < TARGET_KEY_P95_MS and self.keys_missed == 0
            and not self.backlog_grew and self.events_folded == self.events_written
        )  # fmt: skip


async def _responsiveness(rate_hz: float, seconds: float, workdir: Path) -> Responsiveness:
    run = synthetic_run(workdir)
    total = max(1, int(rate_hz * seconds))
    soak = SyntheticSoak.for_run(run)
    soak.progress_per_step = SyntheticSoak.events_for(total, len(soak.steps))
    soak.level_every = max(2, int(rate_hz * 2))  # a level change every ~2 s: log lines, panel redraws
    live_state(run, soak)
    console = AttachedConsole(run)
    app, folds = console.app, console.folds
    lock = RunnerLock(run)
    lock.acquire()  # the runner is alive, as during a soak
    try:
        async with console.run_test():
            if not await console.until(lambda: app.view is not None, OPEN_DEADLINE_S):
                raise RuntimeError(f"the console did not open {run.root} within {OPEN_DEADLINE_S} s")
            main = app.screen
            writer = RunDirWriter(run, soak, rate_hz, 1.0, total, seconds + 5.0)
            latencies: list[float] = []
            missed = presses = 0
            sampler = BacklogSampler(writer, folds, seconds + 5.0 + STOP_DEADLINE_S)
            t_start = time.monotonic()
            writer.start()
            sampler.start()
            try:
                while time.monotonic() - t_start < seconds and not writer.finished:
                    started = time.monotonic()
                    if app.screen is main:  # g opens the gates screen; escape goes back
                        latency = await console.key_latency_s("g", lambda: isinstance(app.screen, GatesScreen))
                    else:
                        latency = await console.key_latency_s("escape", lambda: app.screen is main)
                    presses += 1
                    if latency is None:
                        missed += 1
                    else:
                        latencies.append(1000.0 * latency)
                    await asyncio.sleep(max(0.0, KEY_EVERY_S - (time.monotonic() - started)))
                if app.screen is not main:
                    app.pop_screen()
                await console.until(lambda: writer.finished, STOP_DEADLINE_S + seconds)
            finally:
                try:
                    writer.stop()
                finally:
                    sampler.stop()
            samples = sampler.samples
            written_s = time.monotonic() - t_start
            t_drain = time.monotonic()
            drained = await console.until(lambda: folds.events >= writer.events_written, DRAIN_DEADLINE_S)
            drain_s = time.monotonic() - t_drain if drained else None
            folded = folds.events
    finally:
        lock.release()
    slope = least_squares_slope([(t, float(b)) for t, b in samples])
    return Responsiveness(
        rate_hz=rate_hz, seconds=seconds, events_written=writer.events_written, events_folded=folded,
        key_presses=presses, keys_missed=missed, key_p50_ms=percentile(latencies, 50),
        key_p95_ms=percentile(latencies, 95), key_max_ms=max(latencies, default=None),
        backlog_max=max((b for _, b in samples), default=0), backlog_slope_per_s=slope,
        backlog_grew=backlog_grew(slope, rate_hz), drain_s=drain_s,
        achieved_rate_hz=writer.events_written / written_s if written_s > 0 else 0.0, frames=console.frames.count,
        writer_cpu_s=writer.cpu_s, latencies_ms=[round(v, 3) for v in latencies],
        backlog_samples=[(round(t, 3), b) for t, b in samples],
    )  # fmt: skip


def responsiveness(rate: float = 2000, seconds: float = 10, workdir: Path | None = None) -> Responsiveness:
    """Key-press-to-frame latency and event backlog of the console tailing a run at `rate` events/s.

    A writer thread appends `rate` events/s (and one guard record per second) for `seconds`; every
    KEY_EVERY_S `g` (gates screen) or `escape` (back) is posted. Latency = the first frame written
    that shows the new screen - the key's posting time. Backlog = events written - events folded,
    every BACKLOG_EVERY_S; its least-squares slope says whether it grows. After the writer stops the
    console must fold everything within DRAIN_DEADLINE_S (drain_s).
    """
    with workdir_for(workdir) as base:
        return asyncio.run(_responsiveness(float(rate), float(seconds), base))
