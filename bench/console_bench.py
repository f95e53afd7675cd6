"""Benchmark of the Textual console (`RunConsole`) attached to a synthetic run directory.

`python -m bench.console_bench [--quick] [--json OUT]` measures the console against the issue's
targets, in this process (the console is what is measured; nothing else runs a UI here):

- responsiveness: a writer thread appends `rate` events/s to events.jsonl (guard records and the
  guard's status beside them); every ~0.5 s a key that changes the screen is posted (`g` opens the
  gates screen, `escape` closes it). Key latency = the first frame written to the terminal that shows
  the new screen - the moment the key was posted. Backlog = events written - events the console's
  RunView has folded, sampled every 0.1 s. Target: p95 key latency < 100 ms and no growing backlog.
- memory_after_soak: a synthetic 8-hour soak (progress ~1/s, a guard record every 5 s, as the runner
  and the guard write them) is written first; then the console attaches, folds it all, and this
  process's RSS is read. Target: RSS < 250 MB.
- idle_cpu: the console attached to a steady soak at 1 event and 1 guard record per second; this
  process's CPU time over the window in % of one core. Target: < 5 %.

The console runs as `gb10-console attach --readonly` would, but on a terminal driver that renders every
frame to a string and drops it (Textual's headless driver skips that last step), so the cost of a
frame is in the numbers; a real terminal's own drawing is not. Nothing in console/app.py is patched:
folded events are counted by wrapping the apply method of the views the console itself creates
(`RunOpened` carries its RunView, seen through `run_test`'s message hook), frames by the driver.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import math
import os
import resource
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import orjson
import psutil
from rich.console import Console
from rich.table import Table
from textual import events as textual_events
from textual.app import ScreenStackError
from textual.drivers.headless_driver import HeadlessDriver
from textual.message import Message

from console.app import RunConsole
from console.run_tail import RunOpened
from console.screens.gates_screen import GatesScreen
from engine.units import GIB
from runners.host.cgroup import CgroupMemory
from runners.host.meminfo import MemInfo
from runners.host.psi import Pressure
from runners.plan.steps import StepKey
from runners.replay.metrics import percentile, phase_stats
from runners.run.event_types import (
    EnvVerified,
    Event,
    GuardStarted,
    ReadEvent,
    RunStarted,
    ServeReady,
    ServeStarting,
    StepFinished,
    StepProgress,
    StepStarted,
    WatchdogLevel,
)
from runners.run.events import EventLog, event_line
from runners.run.files import JsonlWriter, write_atomic, write_json_atomic
from runners.run.rundir import RunDir, RunnerLock, RunState
from runners.run.runs import create_run, load_run_plan
from runners.watchdog.policy import FULL_SIZE_FLOORS
from runners.watchdog.samplers import GpuSample, Sample

MB = 1_000_000

TARGET_KEY_P95_MS = 100.0
TARGET_RSS_MB = 250.0
TARGET_IDLE_CPU_PCT = 5.0
# The backlog "grows" when its least-squares slope exceeds this fraction of the write rate: the console
# then folds less than (1 - fraction) of what arrives. Between polls it swings by up to rate x 0.2 s.
BACKLOG_GROWTH_FRACTION = 0.05

SCREEN_SIZE = (120, 40)
WRITER_TICK_S = 0.01  # the writer's shortest sleep; at 2,000 events/s it writes 20 per tick
KEY_EVERY_S = 0.5  # one key press per interval: the gates screen opens, then closes
KEY_DEADLINE_S = 5.0  # a key whose screen did not show within this counts as missed
BACKLOG_EVERY_S = 0.1
ATTACH_DEADLINE_S = 60.0  # the console opens the run and starts folding
DRAIN_DEADLINE_S = 60.0  # after the writer stops, the console folds what is left
FOLD_DEADLINE_S = 300.0  # the 8-hour history is folded
SETTLE_S = 2.0  # after attaching, before CPU is counted (start-up is not idle)
STOP_DEADLINE_S = 10.0
WORKDIR_PREFIX = "gb10-console-bench-"

REQUESTS_PER_STEP = 2000
OUTPUT_TOKENS_PER_REQUEST = 160
GUARD_PID = 4242
RUNNER_PID = 4241

BENCH_PLAN = """\
# A synthetic soak for the console benchmark: never executed, only its steps are read.
name = "console-bench"
description = "two arms, eight repetitions of one replay phase"

[serve]
kind = "process"
command = ["{python}", "-m", "engine.server", "--host", "{host}", "--port", "{port}"]

[[arms]]
name = "wo-split-1"
env = { CUTE_WO_SPLIT = "1" }

[[arms]]
name = "wo-split-8"
env = { CUTE_WO_SPLIT = "8" }

[[phases]]
name = "sharegpt"
kind = "sharegpt"
dataset = "builtin"
repeats = 8
requests = 2000
concurrency = 8
max_tokens = 160
ignore_eos = true
"""


# ---- metric definitions (pure) ------------------------------------------------------------------


def least_squares_slope(points: list[tuple[float, float]]) -> float | None:
    """The slope of the least-squares line through (x, y) points.

    slope = sum((x - mean_x) * (y - mean_y)) / sum((x - mean_x) ** 2); None for fewer than two
    points or when every x is the same.
    """
    if len(points) < 2:
        return None
    mean_x = sum(x for x, _ in points) / len(points)
    mean_y = sum(y for _, y in points) / len(points)
    sxx = sum((x - mean_x) ** 2 for x, _ in points)
    if sxx == 0:
        return None
    return sum((x - mean_x) * (y - mean_y) for x, y in points) / sxx


def cpu_percent(cpu_s: float, wall_s: float) -> float:
    """CPU time as % of one core over a wall-clock window: 100 * cpu_s / wall_s (0 for an empty window)."""
    return 100.0 * cpu_s / wall_s if wall_s > 0 else 0.0


def backlog_grew(slope_per_s: float | None, rate_hz: float) -> bool:
    """True when the backlog's slope (events/s) exceeds BACKLOG_GROWTH_FRACTION of the write rate."""
    return slope_per_s is not None and slope_per_s > BACKLOG_GROWTH_FRACTION * rate_hz


# ---- the synthetic soak (pure: dicts, no I/O) ---------------------------------------------------


@dataclass
class SyntheticSoak:
    """The events and guard records of a soak over `steps`, shaped as the runner and the guard write them.

    Events (events.jsonl, without `v` and `t`): run_started; guard_started; per arm serve_starting,
    serve_ready and env_verified; per step step_started, `progress_per_step` step_progress (the fields
    of soak._Progress.flush) and step_finished (PhaseStats as the runner writes it); and every
    `level_every` events a watchdog_level (ok -> warn, then back). After the last step it starts over
    (a resumed session), so the stream never ends. Guard records (watchdog.jsonl) carry the decision's
    numbers and a full `Sample.as_dict()`; the status (watchdog.json) carries the floors.
    """

    run_id: str
    plan: str
    arms: list[str]
    steps: list[StepKey]
    progress_per_step: int = 1800
    level_every: int = 3600
    _level: str = "ok"

    @classmethod
    def for_run(cls, run: RunDir, progress_per_step: int = 1800, level_every: int = 3600) -> SyntheticSoak:
        """The soak of `run`'s own plan (so the console's tree and the events agree)."""
        plan = load_run_plan(run).plan
        return cls(
            run_id=str(run.info()["run_id"]), plan=plan.name, arms=[a.name for a in plan.arms], steps=plan.steps(),
            progress_per_step=max(1, progress_per_step), level_every=max(2, level_every),
        )  # fmt: skip

    @staticmethod
    def events_for(total_events: int, steps: int) -> int:
        """progress_per_step so that one pass over `steps` steps holds about `total_events` events."""
        return max(1, math.ceil(total_events / max(1, steps)) - 2)

    def events(self) -> Iterator[Event]:
        """Events forever, in the order a runner writes them."""
        n = 0
        for session in itertools.count():
            for item in self._session(session):
                n += 1
                if n % self.level_every == 0:
                    yield self._level_change()
                yield item

    def _session(self, session: int) -> Iterator[Event]:
        yield RunStarted(
            run_id=self.run_id, plan=self.plan, pid=RUNNER_PID, arms=self.arms, steps=[s.as_dict() for s in self.steps],
            already_done=0 if session == 0 else len(self.steps),
        )  # fmt: skip
        yield GuardStarted(GUARD_PID, RUNNER_PID, _floors(), mlocked=True, oom_score_adj=-900)
        arm = None
        for step in self.steps:
            if step.arm != arm:
                arm = step.arm
                yield from self._serve(step)
            yield from self._step(step)

    def _serve(self, step: StepKey) -> Iterator[Event]:
        pid, url = 5000 + self.arms.index(step.arm), "http://127.0.0.1:8000"
        yield ServeStarting(step.arm, step.mode, "process", {"kind": "process", "pid": None, "base_url": url})
        yield ServeReady(step.arm, step.mode, "tiny", 2.4, pid, None, url)
        split = step.arm.rsplit("-", 1)[-1]
        yield EnvVerified(step.arm, {"CUTE_WO_SPLIT": split}, [])

    def _step(self, step: StepKey) -> Iterator[Event]:
        yield StepStarted(step, "sharegpt", REQUESTS_PER_STEP, 8, open_loop=False)
        for i in range(1, self.progress_per_step + 1):
            done = REQUESTS_PER_STEP * i // self.progress_per_step
            failed = done // 997
            yield StepProgress(
                step=step, total=REQUESTS_PER_STEP, completed=done, failed=failed,
                output_tokens=(done - failed) * OUTPUT_TOKENS_PER_REQUEST,
                ttft_p50_ms=72.8 + (i % 7) * 0.3, ttft_p95_ms=129.6 + (i % 11) * 0.5,
                tpot_p50_ms=8.96 + (i % 5) * 0.01, tpot_p95_ms=10.04 + (i % 3) * 0.02,
                itl_p50_ms=8.91 + (i % 5) * 0.01, itl_p95_ms=11.2 + (i % 3) * 0.02,
                errors={"timeout": failed} if failed else {},
            )  # fmt: skip
        wall = 1800.0
        stats = replace(
            phase_stats([], wall), requests=REQUESTS_PER_STEP, ok=REQUESTS_PER_STEP - 2, failed=2,
            output_tokens=(REQUESTS_PER_STEP - 2) * OUTPUT_TOKENS_PER_REQUEST, req_s=REQUESTS_PER_STEP / wall,
            output_tok_s=(REQUESTS_PER_STEP - 2) * OUTPUT_TOKENS_PER_REQUEST / wall, ttft_p50_ms=73.1,
            ttft_p95_ms=130.2, tpot_p50_ms=8.98, tpot_p95_ms=10.06, itl_p50_ms=8.93, itl_p95_ms=11.21,
            errors={"timeout": 2},
        )  # fmt: skip
        yield StepFinished(step, stats.as_dict())

    def _level_change(self) -> Event:
        previous, self._level = self._level, ("warn" if self._level == "ok" else "ok")
        available = 15.2 if self._level == "warn" else 48.0
        reason = f"MemAvailable {available:.1f} GiB {'below' if self._level == 'warn' else 'above'} WARN 16.0 GiB"
        return WatchdogLevel(self._level, previous, **_numbers(reason, available))

    def guard_record(self, t: float, i: int) -> dict:
        """A watchdog.jsonl record at `t` (the i-th): the decision's numbers and the full sample."""
        available = 48.0 + 4.0 * math.sin(i / 50.0)
        record = {"t": t, "level": "ok", **_numbers(f"MemAvailable {available:.1f} GiB above WARN 16.0 GiB", available)}
        pressure = Pressure(0.12, 0.1, 0.08, 1_000_000 + i, 0.0, 0.0, 0.0, 20_000 + i)
        sample = Sample(
            t=t,
            mem=MemInfo(total=119 * GIB, available=int(available * GIB), swap_free=0, anon=60 * GIB, shmem=GIB,
                        hugetlb=0),
            psi=pressure,
            target=CgroupMemory(version=2, usage_bytes=58 * GIB + i * 4096, limit_bytes=None, oom_kills=0,
                                pressure=pressure),
            gpu=GpuSample(available=True, name="NVIDIA GB10", unified=True, util_pct=96.0 + i % 4,
                          temp_c=61.0 + i % 3, power_w=88.0 + i % 9, sm_clock_mhz=2418, mem_clock_mhz=4266,
                          process_mem_bytes=None, device_mem_total=None),
        )  # fmt: skip
        record["sample"] = sample.as_dict()
        return record

    def guard_status(self, t: float) -> dict:
        """watchdog.json at `t`: the current level, the floors and the decision's numbers."""
        return {
            "t": t, "pid": GUARD_PID, "level": "ok", "action": None, "floors_gib": _floors(), "last_kill": None,
            **_numbers("MemAvailable 48.0 GiB above WARN 16.0 GiB", 48.0),
        }  # fmt: skip


def _floors() -> dict:
    f = FULL_SIZE_FLOORS
    return {"warn": f.warn_gib, "abort": f.abort_gib, "kill": f.kill_gib}


def _numbers(reason: str, available: float) -> dict:
    """The decision's numbers, keyed as the guard writes them (guard._numbers)."""
    return {
        "reason": reason, "available_gib": round(available, 3), "fill_gib_s": 0.0, "seconds_to_kill_floor": None,
        "restart_allowed": True,
    }  # fmt: skip


# ---- writing the run directory ------------------------------------------------------------------


def synthetic_run(base: Path, plan: Path | None = None) -> RunDir:
    """A real run directory under `base` (create_run), from `plan` or the benchmark's own plan."""
    if plan is None:
        plan = base / "plan.toml"
        plan.write_text(BENCH_PLAN)
    return create_run(plan, base / "run", base)


def live_state(run: RunDir, soak: SyntheticSoak) -> None:
    """state.json as a running runner keeps it."""
    state = RunState(run_id=soak.run_id, plan=soak.plan, status="running", steps_total=len(soak.steps),
                     runner_pid=RUNNER_PID, started_at=time.time())  # fmt: skip
    run.write_state(state)


@dataclass(frozen=True)
class HistoryWritten:
    """What write_history appended."""

    events: int
    records: int
    bytes: int
    seconds: float


def write_history(
    run: RunDir, soak: SyntheticSoak, hours: float, event_rate_hz: float, sample_rate_hz: float
) -> HistoryWritten:
    """Append `hours` of soak at once: events every 1/event_rate_hz s and guard records every 1/sample_rate_hz s
    of synthetic time, ending now; watchdog.json is the last status. Lines are written in large batches."""
    t0 = time.perf_counter()
    span = hours * 3600.0
    start = time.time() - span
    n_events = max(1, int(span * event_rate_hz))
    n_records = max(1, int(span * sample_rate_hz))
    written = 0
    with open(run.events, "ab") as fh:
        batch: list[bytes] = []
        for i, event in enumerate(itertools.islice(soak.events(), n_events)):
            batch.append(_line(event_line(event, start + i / event_rate_hz)))
            if len(batch) >= 1000:
                written += fh.write(b"".join(batch))
                batch.clear()
        written += fh.write(b"".join(batch))
    with open(run.watchdog_jsonl, "ab") as fh:
        batch = []
        for i in range(n_records):
            batch.append(_line(soak.guard_record(start + i / sample_rate_hz, i)))
            if len(batch) >= 500:
                written += fh.write(b"".join(batch))
                batch.clear()
        written += fh.write(b"".join(batch))
    write_atomic(run.watchdog_json, orjson.dumps(soak.guard_status(time.time())))
    return HistoryWritten(n_events, n_records, written, time.perf_counter() - t0)


def _line(obj: dict) -> bytes:
    return orjson.dumps(obj, option=orjson.OPT_APPEND_NEWLINE)


class RunDirWriter:
    """A thread that appends a live soak to a run directory at fixed rates, like the runner and the guard.

    Events go through the runner's own EventLog (one write per event, fsync for the durable ones) at
    `event_rate_hz`; guard records through a JsonlWriter (fsynced, as the guard does) at
    `record_rate_hz`; watchdog.json is replaced every `status_every_s`. It stops after `max_events`
    events or `max_seconds`, whichever comes first, or on stop(). `events_written` counts events whose
    line is complete in the file; `cpu_s` is the thread's own CPU time so far (updated every tick).
    """

    def __init__(
        self, run: RunDir, soak: SyntheticSoak, event_rate_hz: float, record_rate_hz: float, max_events: int,
        max_seconds: float, status_every_s: float = 1.0,
    ) -> None:  # fmt: skip
        self.run_dir, self.soak = run, soak
        self.event_rate_hz, self.record_rate_hz = event_rate_hz, record_rate_hz
        self.max_events, self.max_seconds, self.status_every_s = max_events, max_seconds, status_every_s
        self.events_written = 0
        self.records_written = 0
        self.cpu_s = 0.0
        self.error: BaseException | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="console-bench-writer", daemon=True)

    def start(self) -> RunDirWriter:
        """Start writing."""
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop and join (bounded); raises what the thread raised."""
        self._stop.set()
        self._thread.join(STOP_DEADLINE_S)
        if self._thread.is_alive():
            raise RuntimeError(f"the bench writer did not stop within {STOP_DEADLINE_S} s")
        if self.error is not None:
            raise RuntimeError(f"the bench writer failed: {self.error!r}") from self.error

    @property
    def finished(self) -> bool:
        """True once the thread has ended (limit reached or stopped)."""
        return self._thread.ident is not None and not self._thread.is_alive()

    def __enter__(self) -> RunDirWriter:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _run(self) -> None:
        cpu0 = time.thread_time()
        log = EventLog(self.run_dir.events)
        records = JsonlWriter(self.run_dir.watchdog_jsonl)
        source = self.soak.events()
        try:
            t0 = time.monotonic()
            next_status = t0
            while not self._stop.is_set():
                elapsed = time.monotonic() - t0
                if elapsed >= self.max_seconds or self.events_written >= self.max_events:
                    break
                due = min(self.max_events, int(elapsed * self.event_rate_hz) + 1) - self.events_written
                for event in itertools.islice(source, max(0, due)):
                    log.emit(event)
                    self.events_written += 1
                while self.records_written < int(elapsed * self.record_rate_hz) + 1:
                    records.append(self.soak.guard_record(time.time(), self.records_written), sync=True)
                    self.records_written += 1
                if time.monotonic() >= next_status:
                    write_atomic(self.run_dir.watchdog_json, orjson.dumps(self.soak.guard_status(time.time())))
                    next_status += self.status_every_s
                self.cpu_s = time.thread_time() - cpu0
                next_due = min(
                    (self.events_written + 1) / self.event_rate_hz, (self.records_written + 1) / self.record_rate_hz,
                    next_status - t0,
                )  # fmt: skip
                self._stop.wait(min(max(next_due - (time.monotonic() - t0), WRITER_TICK_S), 1.0))
        except BaseException as exc:  # reported by stop()
            self.error = exc
        finally:
            log.close()
            records.close()
            self.cpu_s = time.thread_time() - cpu0


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


# ---- the attached console -----------------------------------------------------------------------


@dataclass
class FoldCounter:
    """What the console has folded: events into its RunView, watchdog.jsonl records into its WatchdogView.

    The console's own view objects are wrapped (instance attributes), nothing in console/app.py: the
    RunView arrives in `RunOpened`, which `message_hook` sees before the console's handler runs.
    """

    events: int = 0
    records: int = 0

    def attach(self, app: RunConsole) -> Callable[[Message], None]:
        """Count the app's folds; returns the message hook for `run_test`."""
        fold_record = app.watchdog.apply

        def apply_record(record: object) -> None:
            fold_record(record)
            if isinstance(record, dict) and "type" not in record and "floors_gib" not in record:
                self.records += 1  # a watchdog.jsonl line (not an event, not the watchdog.json status)

        app.watchdog.apply = apply_record  # type: ignore[method-assign]

        def hook(message: Message) -> None:
            if isinstance(message, RunOpened):
                view = message.view
                fold_event = view.apply

                def apply_event(event: ReadEvent) -> str | None:
                    line = fold_event(event)
                    self.events += 1
                    return line

                view.apply = apply_event  # type: ignore[method-assign]

        return hook


@dataclass
class FrameLog:
    """Frames the console wrote to its terminal: (perf_counter time, the screen shown)."""

    frames: list[tuple[float, int]] = field(default_factory=list)  # the last 1,000
    count: int = 0  # every frame
    bytes_written: int = 0
    _bytes_at_last_frame: int = 0
    _new_frame: asyncio.Event | None = None

    def wrote(self, n: int) -> None:
        """The driver wrote `n` bytes."""
        self.bytes_written += n

    def displayed(self, screen_id: int) -> None:
        """A display pass ended; it is a frame when it wrote anything."""
        if self.bytes_written > self._bytes_at_last_frame:
            self._bytes_at_last_frame = self.bytes_written
            self.count += 1
            self.frames.append((time.perf_counter(), screen_id))
            del self.frames[:-1000]
            if self._new_frame is not None:
                self._new_frame.set()

    async def next_frame(self, timeout_s: float) -> None:
        """Wait (on the app's loop) for the next frame, at most `timeout_s`."""
        self._new_frame = asyncio.Event()
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(self._new_frame.wait(), timeout_s)

    def first_after(self, t0: float, screen_id: int) -> float | None:
        """When the first frame after `t0` showing `screen_id` was written, or None."""
        return next((t for t, s in self.frames if t > t0 and s == screen_id), None)


class NullTerminalDriver(HeadlessDriver):
    """A terminal of fixed size that takes every frame and drops it: not headless, so Textual renders
    each frame to its escape sequences; no input."""

    frame_log: FrameLog  # set on the per-app subclass

    @property
    def is_headless(self) -> bool:
        """False: frames are rendered and written (here: counted)."""
        return False

    def write(self, data: str) -> None:
        """Count the frame's bytes; nothing reaches a terminal."""
        self.frame_log.wrote(len(data))


class AttachedConsole:
    """`RunConsole(run, readonly=True)` on a NullTerminalDriver, with its folds and frames counted."""

    def __init__(self, run: RunDir) -> None:
        self.app = RunConsole(run, readonly=True)
        self.folds = FoldCounter()
        self.frames = FrameLog()
        self._hook = self.folds.attach(self.app)
        self.app.driver_class = type("BenchDriver", (NullTerminalDriver,), {"frame_log": self.frames})
        self.app.post_display_hook = self._displayed  # type: ignore[method-assign]

    def _displayed(self) -> None:
        with contextlib.suppress(ScreenStackError):  # a last display while the app shuts down
            self.frames.displayed(id(self.app.screen))

    def run_test(self):
        """The app running (as an async context manager yielding a Pilot)."""
        return self.app.run_test(headless=False, size=SCREEN_SIZE, message_hook=self._hook)

    async def until(self, predicate: Callable[[], bool], deadline_s: float, interval_s: float = 0.05) -> bool:
        """Poll `predicate` on the app's loop until true or `deadline_s` passes."""
        end = time.monotonic() + deadline_s
        while time.monotonic() < end:
            if predicate():
                return True
            await asyncio.sleep(interval_s)
        return bool(predicate())

    async def key_latency_s(self, key: str, screen_shown: Callable[[], bool]) -> float | None:
        """Post `key` as the terminal driver would; seconds until a frame of the screen it brings was written."""
        character = key if len(key) == 1 else None
        message = textual_events.Key(key, character)
        message.set_sender(self.app)
        t0 = time.perf_counter()
        self.app.post_message(message)
        end = time.monotonic() + KEY_DEADLINE_S
        while time.monotonic() < end:
            if screen_shown():
                shown = self.frames.first_after(t0, id(self.app.screen))
                if shown is not None:
                    return shown - t0  # the frame's own time: how long this loop took to see it does not count
            await self.frames.next_frame(0.05)
        return None


# ---- measurements -------------------------------------------------------------------------------


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
            if not await console.until(lambda: app.view is not None, ATTACH_DEADLINE_S):
                raise RuntimeError(f"the console did not open {run.root} within {ATTACH_DEADLINE_S} s")
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
    with _workdir(workdir) as base:
        return asyncio.run(_responsiveness(float(rate), float(seconds), base))


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
    with _workdir(workdir) as base:
        return asyncio.run(_memory_after_soak(float(hours), float(event_rate_hz), float(sample_rate_hz), base))


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
            limit_s = ATTACH_DEADLINE_S + SETTLE_S + seconds  # stopped when the window ends, long before this
            writer = RunDirWriter(run, soak, rate_hz, rate_hz, int(limit_s * rate_hz) + 1, limit_s)
            writer.start()
            try:
                await console.until(lambda: folds.events > 0, ATTACH_DEADLINE_S)
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
    with _workdir(workdir) as base:
        return asyncio.run(_idle_cpu(float(seconds), float(rate_hz), base))


def _rss() -> int:
    return psutil.Process().memory_info().rss


def _peak_rss() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # Linux: KiB


def _cpu_s(process: psutil.Process) -> float:
    times = process.cpu_times()
    return times.user + times.system


@contextlib.contextmanager
def _workdir(workdir: Path | None) -> Iterator[Path]:
    """`workdir` as is (kept), or a temporary directory removed afterwards."""
    if workdir is not None:
        workdir.mkdir(parents=True, exist_ok=True)
        yield workdir
        return
    with tempfile.TemporaryDirectory(prefix=WORKDIR_PREFIX) as tmp:
        yield Path(tmp)


# ---- CLI ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class BenchSizes:
    """How long and how hard each measurement runs."""

    rate_hz: float = 2000
    responsive_s: float = 10
    hours: float = 8
    event_rate_hz: float = 1.0
    sample_rate_hz: float = 0.2
    idle_s: float = 30


FULL = BenchSizes()
QUICK = BenchSizes(rate_hz=400, responsive_s=3, hours=0.25, idle_s=3)


@dataclass
class BenchReport:
    """The three results and their verdicts."""

    sizes: BenchSizes
    responsiveness: Responsiveness
    memory: MemoryAfterSoak
    idle_cpu: IdleCpu

    def as_dict(self) -> dict:
        """JSON-ready, with each verdict and the targets."""
        return {
            "sizes": asdict(self.sizes),
            "targets": {"key_p95_ms": TARGET_KEY_P95_MS, "rss_mb": TARGET_RSS_MB, "idle_cpu_pct": TARGET_IDLE_CPU_PCT,
                        "backlog_growth_fraction": BACKLOG_GROWTH_FRACTION},
            "responsiveness": {**asdict(self.responsiveness), "passed": self.responsiveness.passed},
            "memory": {**asdict(self.memory), "passed": self.memory.passed},
            "idle_cpu": {**asdict(self.idle_cpu), "passed": self.idle_cpu.passed},
            "passed": self.passed,
            "host": {"cpus": os.cpu_count(), "python": sys.version.split()[0]},
        }  # fmt: skip

    @property
    def passed(self) -> bool:
        """Every target met."""
        return self.responsiveness.passed and self.memory.passed and self.idle_cpu.passed


def run_all(sizes: BenchSizes) -> BenchReport:
    """The three measurements; memory first, while this process's heap is fresh."""
    memory = memory_after_soak(sizes.hours, sizes.event_rate_hz, sizes.sample_rate_hz)
    keys = responsiveness(sizes.rate_hz, sizes.responsive_s)
    cpu = idle_cpu(sizes.idle_s)
    return BenchReport(sizes, keys, memory, cpu)


def _f(value: float | None, digits: int = 1) -> str:
    return "n/a" if value is None else f"{value:,.{digits}f}"


def report_table(report: BenchReport) -> Table:
    """The results as a rich table: measure, value, target, verdict."""
    r, m, c = report.responsiveness, report.memory, report.idle_cpu
    table = Table(title="console benchmark", title_justify="left")
    for column in ("measure", "value", "target", "verdict"):
        table.add_column(column)

    def verdict(ok: bool) -> str:
        return "[green]pass[/]" if ok else "[bold red]FAIL[/]"

    key_ok = r.key_p95_ms is not None and r.key_p95_ms < TARGET_KEY_P95_MS and r.keys_missed == 0
    kept_up = not r.backlog_grew and r.events_folded == r.events_written
    rows = [
        (f"key -> frame at {r.rate_hz:,.0f} ev/s, {r.seconds:g} s (p50 / p95 / max)",
         f"{_f(r.key_p50_ms)} / {_f(r.key_p95_ms)} / {_f(r.key_max_ms)} ms, "
         f"{r.key_presses} keys, {r.keys_missed} missed",
         f"p95 < {TARGET_KEY_P95_MS:g} ms", verdict(key_ok)),
        ("backlog (written - folded): max, slope, drain",
         f"{r.backlog_max:,} ev, {_f(r.backlog_slope_per_s)} ev/s, drained in {_f(r.drain_s, 2)} s "
         f"({r.events_folded:,}/{r.events_written:,} folded, {r.achieved_rate_hz:,.0f} ev/s written)",
         f"slope < {BACKLOG_GROWTH_FRACTION * r.rate_hz:,.0f} ev/s", verdict(kept_up)),
        (f"RSS after {m.hours:g} h of soak ({m.events_written:,} events, {m.records_written:,} records)",
         f"{_f(m.rss_after_mb)} MB (before {_f(m.rss_before_mb)}, +{_f(m.rss_delta_mb)}; peak {_f(m.peak_rss_mb)}; "
         f"folded in {_f(m.fold_s, 2)} s)", f"< {TARGET_RSS_MB:g} MB", verdict(m.passed)),
        (f"CPU attached at {c.event_rate_hz:g} Hz, {c.seconds:g} s",
         f"{_f(c.cpu_pct, 2)} % of a core (bench writer {_f(c.writer_cpu_pct, 2)} %)",
         f"< {TARGET_IDLE_CPU_PCT:g} %", verdict(c.passed)),
    ]  # fmt: skip
    for row in rows:
        table.add_row(*row)
    return table


def main(argv: list[str] | None = None) -> int:
    """`python -m bench.console_bench [--quick] [--json OUT]`; exit 0 when every target is met, else 1."""
    parser = argparse.ArgumentParser(prog="python -m bench.console_bench", description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="small rates and short windows (tests, smoke runs)")
    parser.add_argument("--json", type=Path, metavar="OUT", help="also write the results (raw samples too) as JSON")
    args = parser.parse_args(argv)
    console = Console()
    sizes = QUICK if args.quick else FULL
    report = run_all(sizes)
    console.print(report_table(report))
    if args.json:
        write_json_atomic(args.json, report.as_dict())
        console.print(f"results written to {args.json}", highlight=False)
    return 0 if report.passed else 1


if __name__ == "__main__":
    sys.exit(main())
