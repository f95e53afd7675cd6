"""Paused time in the console: the ETA holds still while dispatch is paused, the step in flight and the step tree say
how long it was paused, a finished step's log line what was left out of its wall time, and both summary tables
label their summed wall time and show each arm's paused seconds."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest
from rich.console import Console
from textual.widgets import DataTable, Static

from console.app import RunConsole
from console.cli.headless import summary_table
from console.panels.step_tree import step_label
from console.views.run_view import RunView, StepView
from runners.plan.steps import StepKey
from runners.replay.metrics import phase_stats
from runners.report.summary_model import ArmSummary, Summary, write_summary
from runners.run.event_types import DispatchPaused, LoggedEvent, RunStarted, StepStarted, parse_event
from runners.run.events import EventLog
from runners.run.rundir import RunnerLock
from runners.run.runs import create_run, load_run_plan
from tests.support.plans import write_plan
from tests.support.waits import pilot_until

KEYS = [StepKey("a", "primary", "p", rep) for rep in range(3)]
PAUSE = {"intervals": [[2.0, 7.0]], "paused_s": 5.0, "idle_s": 4.6, "in_flight_s": 0.4, "requests": 2}


STARTED = {"kind": "sharegpt", "requests": 4, "concurrency": 1, "open_loop": False}  # step_started's fields


def _event(type_: str, t: float, step: StepKey | None = None, **fields) -> LoggedEvent:
    read = parse_event({"type": type_, "t": t, **({"step": step.as_dict()} if step else {}), **fields})
    assert isinstance(read, LoggedEvent), read
    return read


def test_the_eta_holds_still_while_paused_and_steps_count_their_pauses() -> None:
    view = RunView(status="running", steps={k: StepView(k) for k in KEYS})
    view.apply(_event("step_started", 0.0, KEYS[0], **STARTED))
    view.apply(_event("dispatch_paused", 2.0, by="console"))
    assert view.steps[KEYS[0]].paused_total(5.0) == 3.0 and view.steps[KEYS[0]].paused_text(5.0) == "paused 3s"
    view.apply(_event("dispatch_resumed", 7.0, paused_s=5.0))
    stats = {"requests": 4, "ok": 4, "failed": 0, "wall_s": 5.4}
    line = view.apply(_event("step_finished", 10.0, KEYS[0], stats=stats, pause=PAUSE))
    assert line == "a/primary/p/0: done, 4 ok / 0 failed in 5.4 s (paused 5.0 s, 4.6 s excluded from wall)"
    first = view.steps[KEYS[0]]
    assert (first.duration(10.0), first.active(10.0), first.paused_s) == (10.0, 5.0, 5.0)

    view.apply(_event("step_started", 10.0, KEYS[1], **STARTED))
    assert view.eta_s(12.0) == pytest.approx(5.0 * 2 - 2.0)  # unpaused mean 5 s; 2 left, one 2 s in
    view.apply(_event("dispatch_paused", 12.0, by="console"))
    assert view.eta_s(12.0) == view.eta_s(20.0) == view.eta_s(300.0) == pytest.approx(8.0)  # held, not counting down
    assert "(paused 8s)" in step_label(view.steps[KEYS[1]], 20.0).plain
    view.apply(_event("dispatch_resumed", 20.0, paused_s=8.0))
    assert view.eta_s(21.0) == pytest.approx(7.0)  # counting again, from where it stood
    assert view.steps[KEYS[1]].paused_text(21.0) == "paused 8s"


def test_a_pause_across_steps_and_runner_sessions_is_counted_where_it_fell() -> None:
    view = RunView(status="running", steps={k: StepView(k) for k in KEYS})
    view.apply(_event("dispatch_paused", 1.0, by="console"))  # between steps: no step to count it
    view.apply(_event("step_started", 3.0, KEYS[0], **STARTED))  # starts held: paused from its start
    assert view.steps[KEYS[0]].paused_total(5.0) == 2.0
    view.apply(_event("step_failed", 6.0, KEYS[0], reason="x"))
    assert view.steps[KEYS[0]].paused_total(100.0) == 3.0  # its end ends its share of the pause
    view.apply(_event("step_started", 7.0, KEYS[1], **STARTED))
    view.apply(
        _event("run_started", 9.0, run_id="r", plan="p", pid=1, arms=[], steps=[], already_done=0)
    )  # a new session dispatches
    assert not view.paused and view.steps[KEYS[1]].paused_total(50.0) == 2.0


async def test_the_console_shows_the_step_paused_and_each_arms_paused_seconds(tmp_path: Path) -> None:
    run = create_run(write_plan(tmp_path), tmp_path / "run", tmp_path)
    steps = load_run_plan(run).plan.steps()
    events = EventLog(run.events)
    events.emit(RunStarted("r", "mini", 1, ["split1", "split8"], [s.as_dict() for s in steps], already_done=0))
    events.emit(StepStarted(steps[0], "sharegpt", 6, 3, open_loop=False))
    events.emit(DispatchPaused("console"))
    stats = replace(phase_stats([], 2.5), ok=6, failed=0, ttft_p50_ms=20.0, ttft_p95_ms=30.0, tpot_p50_ms=5.0,
                    tpot_p95_ms=6.0, output_tok_s=99.0)  # fmt: skip
    arm = ArmSummary(arm="split1", arm_env="CUTE_WO_SPLIT=1", env_status="verified", env_where=None, steps_done=1,
                     steps_total=1, stats=stats, paused_s=0.0, paused_excluded_s=0.0, verdict="baseline",
                     gsm8k_correct=None, gsm8k_questions=None)  # fmt: skip
    arms = (arm, arm.model_copy(update={"arm": "split8", "arm_env": "CUTE_WO_SPLIT=8", "paused_s": 21.04,
                                        "paused_excluded_s": 20.36, "verdict": "default candidate"}))  # fmt: skip
    write_summary(run.summary_json, Summary(run_id="r", plan="mini", status="finished", arms=arms))
    lock = RunnerLock(run)
    lock.acquire()  # a live runner holds the run: the console shows its step (a lock-less one is a dead runner's)
    try:
        await _show_paused(run, RunConsole(run, readonly=True))
    finally:
        lock.release()

    rendered = Console(width=200, record=True)
    rendered.print(summary_table(run))
    text = rendered.export_text()
    assert "wall s (sum)" in text and "paused s" in text and "21.0 (20.4 excluded from wall)" in text


async def _show_paused(run, app: RunConsole) -> None:
    """The current step says PAUSED and the summary table has each arm's paused seconds."""
    async with app.run_test(size=(140, 40)) as pilot:
        current = app.query_one("#current", Static)
        assert await pilot_until(pilot, lambda: "PAUSED, paused" in str(current.render()), 10), current.render()
        assert "(not counted in wall time or ETA)" in str(current.render())
        table = app.query_one("#summary", DataTable)
        assert await pilot_until(pilot, lambda: table.row_count == 2, 10)
        labels = [str(c.label) for c in table.columns.values()]
        assert labels[5:7] == ["wall s (sum)", "paused s"]  # after arm, verdict, arm env, ok, failed
        assert table.get_row_at(0)[6] == "0" and table.get_row_at(1)[6] == "21.0 (20.4 excluded from wall)"
        assert [table.get_row_at(i)[1] for i in range(2)] == ["baseline", "default candidate"]
