"""A console over a run whose runner is gone never shows what was in flight as live: not the serve target's
uptime, not a step's ▶ and clock, not the previous session's runner.log line; its control keys are the ones
that make sense (none on a finished run); a damaged state.json is said, not read as "created"."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import pytest
from textual.widgets import DataTable, Tree

from console import run_tail
from console.app import RunConsole
from console.panels.events_log import EventsLog
from console.screens.abort_screen import ConfirmAbort
from console.views.run_view import RunView
from runners.run.control import request_abort
from runners.run.event_types import (
    GuardEndedTarget,
    LoggedEvent,
    RunFinished,
    RunStarted,
    ServeReady,
    ServeStarting,
    StepFinished,
    StepStarted,
)
from runners.run.events import EventLog
from runners.run.files import read_jsonl
from runners.run.rundir import RunDir, RunnerLock, RunState
from runners.run.runs import create_run, load_run_plan, spawn_detached
from tests.support.plans import write_plan
from tests.support.waits import pilot_until as until
from tests.support.waits import wait_until

URL = "http://127.0.0.1:1"


def arm_rows(app: RunConsole) -> list[list]:
    table = app.query_one("#arms", DataTable)
    return [table.get_row_at(i) for i in range(table.row_count)]


def step_labels(app: RunConsole) -> list[str]:
    tree = app.query_one("#steps", Tree)
    return [str(leaf.label) for arm in tree.root.children for leaf in arm.children]


def title(app: RunConsole) -> str:
    return str(app.query_one("#title").render())


def control_keys(app: RunConsole) -> set[str]:
    return {"a", "r", "p"} & set(app.screen.active_bindings)


def _events_up_to_a_step_in_flight(run: RunDir, pid: int) -> EventLog:
    events = EventLog(run.events)
    steps = load_run_plan(run).plan.steps()
    events.emit(RunStarted("r", "mini", pid, ["split1", "split8"], [s.as_dict() for s in steps], already_done=0))
    events.emit(ServeStarting("split1", "primary", "process", {"kind": "process", "base_url": URL}))
    events.emit(ServeReady("split1", "primary", "tiny", 1.0, 5000, None, URL))
    events.emit(StepStarted(steps[0], "sharegpt", 6, 3, open_loop=False))
    return events


async def test_half_an_event_log_never_reads_finished_with_a_step_running(tmp_path: Path) -> None:
    """state.json says finished, events.jsonl stops mid-step and no runner holds the run: the step is `?` with its
    clock stopped, the serve target unknown, the clock still, the runner named gone, the run incomplete; only r."""
    run = create_run(write_plan(tmp_path), tmp_path / "run", tmp_path)
    _events_up_to_a_step_in_flight(run, 4242).close()
    run.write_state(RunState(run_id="r", plan="mini", status="finished", resumable=False, steps_total=2,
                             steps_done=2, runner_pid=4242))  # fmt: skip
    app = RunConsole(run)
    async with app.run_test(size=(120, 40)) as pilot:
        assert await until(pilot, lambda: app.view is not None and app.view.status == "gone", 10)
        await pilot.pause(0.3)
        rows, labels, shown = arm_rows(app), step_labels(app), title(app)
        assert rows[0][1:4] == ["unknown", "-", "-"], rows
        assert labels[0].startswith("? replay #0") and not any(label.startswith("▶") for label in labels), labels
        assert "incomplete (event log cut)" in shown and "runner gone (pid 4242)" in shown, shown  # never "finished"
        assert "runner gone (pid 4242) without run_finished" in "\n".join(app.query_one(EventsLog).lines)
        assert control_keys(app) == {"r"}  # an incomplete run is resumable; nothing to abort or pause
        await pilot.pause(1.2)  # the 1 s clock: nothing of the stale session moves
        assert step_labels(app) == labels and title(app) == shown and arm_rows(app) == rows


async def test_a_finished_run_offers_no_abort_resume_or_pause(tmp_path: Path) -> None:
    """a, r and p are neither shown nor run on a finished run."""
    run = create_run(write_plan(tmp_path), tmp_path / "run", tmp_path)
    events = _events_up_to_a_step_in_flight(run, 4242)
    steps = load_run_plan(run).plan.steps()
    events.emit(StepFinished(steps[0], {"requests": 6, "ok": 6, "failed": 0, "wall_s": 1.0}))
    events.emit(RunFinished("finished", "all steps done", 2, 0))
    events.close()
    run.write_state(RunState(run_id="r", plan="mini", status="finished", resumable=False, steps_total=2,
                             steps_done=2, runner_pid=4242))  # fmt: skip
    app = RunConsole(run)
    async with app.run_test(size=(120, 40)) as pilot:
        assert await until(pilot, lambda: app.runner_status.label == "finished", 10)
        await pilot.pause(0.2)
        assert control_keys(app) == set()
        await pilot.press("a", "r", "p")
        await pilot.pause(0.2)
        assert not isinstance(app.screen, ConfirmAbort) and app.runner is None and not app._notifications
        assert not (run.control_dir / "pause.json").exists()
        assert app.view.status == "finished" and "runner gone" not in title(app)


async def test_a_runner_that_holds_its_lock_but_stops_beating_is_shown_silent(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A runner stopped (SIGSTOP) or stuck keeps its lock but not its heartbeat: the title says so."""
    monkeypatch.setattr(run_tail, "RUNNER_SILENT_S", 1.0)
    run = create_run(write_plan(tmp_path), tmp_path / "run", tmp_path)
    _events_up_to_a_step_in_flight(run, 4242).close()
    run.runner_heartbeat.touch()
    lock = RunnerLock(run)
    lock.acquire()
    try:
        app = RunConsole(run, readonly=True)
        async with app.run_test(size=(160, 40)) as pilot:
            assert await until(pilot, lambda: "RUNNER SILENT" in title(app), 10), title(app)
            assert "(pid 4242)" in title(app) and app.view.status == "running"
            run.runner_heartbeat.touch()  # it beats again
            assert await until(pilot, lambda: "runner alive" in title(app), 5), title(app)
    finally:
        lock.release()


def test_a_target_the_guard_ended_is_no_longer_shown_ready() -> None:
    view = RunView()
    view.apply(LoggedEvent(10.0, ServeReady("split1", "primary", "tiny", 1.0, 5000, None, URL)))
    target = {"kind": "process", "arm": "split1", "mode": "primary", "pid": 5000}
    view.apply(LoggedEvent(11.0, GuardEndedTarget("the runner (pid 1) is gone", False, "left: pid 5000 is gone",
                                                  target, 0.1)))  # fmt: skip
    assert view.arms["split1"].serve == "ready pid 5000"  # it was gone already: the guard ended nothing
    view.apply(LoggedEvent(12.0, GuardEndedTarget("memory KILL: below the floor", True, "killed process group 5000",
                                                  target, 0.1)))  # fmt: skip
    arm = view.arms["split1"]
    assert (arm.serve, arm.uptime(20.0), arm.health) == ("killed by the guard", None, "-")


@pytest.mark.parametrize("damage", ['{"run_id": "r", "status": "fini', "[1, 2]"], ids=["torn", "not-an-object"])
async def test_a_damaged_state_json_is_said_not_shown_as_created(tmp_path: Path, damage: str) -> None:
    run = create_run(write_plan(tmp_path), tmp_path / "run", tmp_path)
    run.state_json.write_text(damage)
    app = RunConsole(run, readonly=True)
    async with app.run_test(size=(120, 40)) as pilot:
        assert await until(pilot, lambda: app.runner_status.label != "opening", 10)
        await pilot.pause(0.2)
        assert app.runner_status.label == "damaged" and "damaged" in title(app)  # never "created"
        run.write_state(RunState(run_id="r", plan="mini", status="aborted"))  # repaired: read again
        # read again once repaired; no run_finished in its (empty) event log says "aborted": incomplete
        assert await until(pilot, lambda: app.runner_status.label == "incomplete (event log cut)", 5)


@pytest.mark.slow
async def test_a_runner_killed_with_sigkill_leaves_nothing_shown_live(tmp_path: Path) -> None:
    """A first session aborted (runner.log: its last words); the console resumes it with r and the new runner is
    SIGKILLed mid-step: the serve panel stops saying ready (no uptime), the step stops, the title says the runner
    is gone, and the events log says how it died without quoting the first session's runner.log line."""
    run = create_run(write_plan(tmp_path, requests=400, concurrency=2, max_tokens=64), tmp_path / "run", tmp_path)
    first = spawn_detached(run)
    try:
        assert wait_until(lambda: any(e["type"] == "step_started" for e in read_jsonl(run.events)), 90)
        request_abort(run, "test: first session stops", by="test")
        assert first.wait(60) == 3
    finally:
        if first.poll() is None:
            first.kill()
            first.wait(10)
    assert "runner: aborted" in run.runner_log.read_text()
    app = RunConsole(RunDir(run.root))
    try:
        async with app.run_test(size=(120, 40)) as pilot:
            assert await until(pilot, lambda: control_keys(app) == {"r"}, 10)
            await pilot.press("r")
            assert await until(pilot, lambda: app.runner is not None, 10)
            step_running = lambda: app.view.current_step() is not None and app.view.current_step().completed > 0  # noqa: E731
            assert await until(pilot, step_running, 90)
            assert arm_rows(app)[0][1].startswith("ready pid") and control_keys(app) == {"a", "p"}
            pid = app.runner.pid
            os.kill(pid, signal.SIGKILL)
            assert await until(pilot, lambda: app.view.status == "gone", 10)
            await pilot.pause(0.5)
            rows, labels, shown = arm_rows(app), step_labels(app), title(app)
            assert rows[0][1] in ("unknown", "stopped by the guard") and rows[0][2:4] == ["-", "-"], rows
            assert not any(label.startswith("▶") for label in labels) and any(label.startswith("?") for label in labels)
            assert f"runner gone (pid {pid})" in shown and "interrupted (resumable)" in shown, shown
            lines = "\n".join(app.query_one(EventsLog).lines)
            assert "runner exited with code -9: killed by SIGKILL; it wrote nothing to runner.log" in lines, lines
            assert "runner: aborted" not in lines
            assert control_keys(app) == {"r"}
            await pilot.pause(1.2)
            assert step_labels(app) == labels and arm_rows(app)[0][3] == "-" and title(app) == shown
    finally:
        if app.runner is not None and app.runner.poll() is None:
            app.runner.kill()
            app.runner.wait(10)
