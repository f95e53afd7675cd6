"""The synthetic soak (runners/testbed): the history it writes is a soak the console's views fold without a skip,
and its live writer keeps its count and time bounds."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest

from console.views.run_view import RunView
from console.views.watchdog_view import WatchdogView
from runners.run.event_types import parse_event
from runners.run.files import read_json, read_jsonl
from runners.run.runs import load_run_plan
from runners.testbed.soak_writer import RunDirWriter, synthetic_run, write_history
from runners.testbed.synthetic_soak import SyntheticSoak
from tests.support.waits import wait_until

# The fields runners.soak.progress.ProgressReporter.flush emits with every step_progress event.
PROGRESS_FIELDS = {
    "step", "total", "completed", "failed", "output_tokens", "ttft_p50_ms", "ttft_p95_ms", "tpot_p50_ms",
    "tpot_p95_ms", "itl_p50_ms", "itl_p95_ms", "errors",
}  # fmt: skip


def writer_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name.startswith("synthetic-soak-")]


def test_history_is_a_soak_the_views_fold_without_a_skip(tmp_path: Path) -> None:
    run = synthetic_run(tmp_path)
    soak = SyntheticSoak.for_run(run, progress_per_step=20, level_every=50)
    history = write_history(run, soak, hours=0.1, event_rate_hz=1.0, sample_rate_hz=0.2)
    assert (history.events, history.records) == (360, 72)

    events = read_jsonl(run.events)
    assert len(events) == 360
    times = [e["t"] for e in events]
    assert times == sorted(times) and time.time() - 361 < times[0] and times[-1] <= time.time()
    kinds = {e["type"] for e in events}
    assert {"run_started", "guard_started", "step_started", "step_progress", "step_finished", "watchdog_level"} <= kinds
    progress = [e for e in events if e["type"] == "step_progress"]
    assert all(set(e) - {"v", "t", "type"} == PROGRESS_FIELDS for e in progress)

    view = RunView.for_plan(load_run_plan(run).plan, soak.run_id)
    for event in events:
        view.apply(parse_event(event))
    assert set(view.steps) == set(soak.steps)  # every event names a step of the plan
    finished = sum(e["type"] == "step_finished" for e in events)
    assert finished >= 10 and sum(s.status == "done" for s in view.steps.values()) == finished
    assert view.watchdog_level in ("ok", "warn")

    records = read_jsonl(run.watchdog_jsonl)
    guard = WatchdogView.from_records([*records, read_json(run.watchdog_json)])
    assert (guard.records, guard.skipped) == (73, 0)
    assert guard.floors is not None and guard.gpu is not None and guard.gpu.unified is True
    assert guard.series["available_gib"].has_data()


@pytest.mark.serial  # a 3 s bound
def test_writer_keeps_its_count_and_time_bounds(tmp_path: Path) -> None:
    run = synthetic_run(tmp_path)
    soak = SyntheticSoak.for_run(run, progress_per_step=50)
    with RunDirWriter(run, soak, event_rate_hz=2000, record_rate_hz=20, max_events=300, max_seconds=5) as w:
        assert wait_until(lambda: w.finished, 5)
    assert w.events_written == 300 and len(read_jsonl(run.events)) == 300
    assert w.records_written == len(read_jsonl(run.watchdog_jsonl)) >= 1
    assert read_json(run.watchdog_json)["floors_gib"]["kill"] > 0

    slow = RunDirWriter(run, soak, event_rate_hz=10, record_rate_hz=1, max_events=10_000, max_seconds=0.3)
    t0 = time.monotonic()
    with slow:
        assert wait_until(lambda: slow.finished, 5)
    assert time.monotonic() - t0 < 3 and 1 <= slow.events_written <= 5
    assert not writer_threads()
