"""A synthetic soak written into a real run directory: its whole history at once, or live at fixed rates.

`synthetic_run` creates the run (create_run, from SYNTHETIC_PLAN or a given plan); `write_history` appends hours
of it in large batches; `RunDirWriter` appends it live from a thread, through the runner's own EventLog and the
guard's JsonlWriter, as they write during a soak.
"""

from __future__ import annotations

import itertools
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import orjson

from runners.run.events import EventLog, event_line
from runners.run.files import JsonlWriter, write_atomic
from runners.run.rundir import RunDir, RunState
from runners.run.runs import create_run
from runners.testbed.synthetic_soak import RUNNER_PID, SyntheticSoak

WRITER_TICK_S = 0.01  # the writer's shortest sleep; at 2,000 events/s it writes 20 per tick
STOP_DEADLINE_S = 10.0

SYNTHETIC_PLAN = """\
# A synthetic soak (runners/testbed): never executed, only its steps are read.
name = "synthetic-soak"
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


def synthetic_run(base: Path, plan: Path | None = None) -> RunDir:
    """A real run directory under `base` (create_run), from `plan` or SYNTHETIC_PLAN."""
    if plan is None:
        plan = base / "plan.toml"
        plan.write_text(SYNTHETIC_PLAN)
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
        self._thread = threading.Thread(target=self._run, name="synthetic-soak-writer", daemon=True)

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
