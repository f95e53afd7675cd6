"""The Textual console driven by Pilot, against real runner processes and run directories."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest
from textual.widgets import DataTable, RichLog, Tree

from console.app import RunConsole
from console.panels.events_log import EventsLog
from console.run_tail import BATCH_BYTES, RunnerChanged, RunnerStatus, RunTail, RunUpdate
from console.screens.abort_screen import ConfirmAbort
from console.screens.help_screen import HelpScreen
from runners.run.control import request_abort
from runners.run.rundir import RunDir, RunnerLock, runner_alive
from runners.run.runs import create_run, spawn_detached
from runners.soak.execute import execute
from tests.support.plans import write_plan
from tests.support.processes import pid_gone
from tests.support.waits import pilot_until as until
from tests.support.waits import wait_until

pytestmark = pytest.mark.slow


def arm_rows(app: RunConsole) -> list[list]:
    table = app.query_one("#arms", DataTable)
    return [table.get_row_at(i) for i in range(table.row_count)]


@pytest.fixture
def live_run(tmp_path: Path):
    """A run with a detached runner working through a long step; always stopped afterwards."""
    run = create_run(write_plan(tmp_path, requests=400, concurrency=2, max_tokens=64), tmp_path / "run", tmp_path)
    runner = spawn_detached(run)
    yield run, runner
    if runner.poll() is None:
        request_abort(run, "test cleanup", by="test")
        try:
            runner.wait(30)
        except Exception:
            runner.kill()
            runner.wait(10)


async def test_shows_both_arms_and_a_then_y_aborts_the_run(live_run) -> None:
    run, runner = live_run
    app = RunConsole(run, runner)
    async with app.run_test(size=(120, 40)) as pilot:
        assert await until(pilot, lambda: app.view and app.view.current_step() and app.view.current_step().completed)
        rows = arm_rows(app)
        assert [r[0] for r in rows] == ["split1", "split8"]
        assert (
            rows[0][5:7] == ["/debug/config", "CUTE_WO_SPLIT=1"]
            and rows[0][2] == "ok"
            and rows[1][1:3] == ["not started", "-"]
        )
        tree = app.query_one("#steps", Tree)
        assert [str(n.label) for n in tree.root.children] == ["split1", "split8"]
        await pilot.press("a")
        assert isinstance(app.screen, ConfirmAbort)
        await pilot.press("y")
        assert await until(
            pilot, lambda: app.runner_status.label == "aborted (resumable)" and not app.runner_status.alive
        )
        assert runner.wait(10) == 3
        assert "abort requested by console" in "\n".join(app.view.log)
    assert run.read_state().label() == "aborted (resumable)"


async def test_a_then_n_keeps_the_soak_running_and_q_leaves_it_running(live_run) -> None:
    run, runner = live_run
    app = RunConsole(run, runner)
    async with app.run_test(size=(80, 24)) as pilot:
        assert await until(pilot, lambda: app.runner_status.alive and app.view is not None)
        await pilot.press("a")
        assert isinstance(app.screen, ConfirmAbort)
        await pilot.press("n")
        assert not isinstance(app.screen, ConfirmAbort)
        await pilot.press("question_mark")
        assert isinstance(app.screen, HelpScreen)
        await pilot.press("x")
        assert not isinstance(app.screen, HelpScreen)
        await pilot.pause(0.5)
        await pilot.press("q")
    await asyncio.sleep(0.5)
    assert runner.poll() is None and runner_alive(run)
    assert not (run.control_dir / "abort.json").exists()
    assert run.read_state().status == "running"


async def test_attach_to_a_finished_run_shows_its_summary(tmp_path: Path) -> None:
    run = create_run(write_plan(tmp_path, requests=3), tmp_path / "run", tmp_path)
    assert (await execute(run)).status == "finished"
    app = RunConsole(RunDir(run.root))
    async with app.run_test(size=(120, 40)) as pilot:
        summary = app.query_one("#summary", DataTable)
        assert await until(pilot, lambda: summary.row_count == 2)
        rows = [summary.get_row_at(i) for i in range(2)]
        assert [[row[0], *row[2:4]] for row in rows] == [
            ["split1", "CUTE_WO_SPLIT=1", "3"],
            ["split8", "CUTE_WO_SPLIT=8", "3"],
        ]  # arm, env, ok (the verdict is second)
        assert rows[0][1] == "baseline" and rows[1][1] != "-"
        assert await until(pilot, lambda: app.runner_status.label == "finished")
        assert all(s.status == "done" for s in app.view.steps.values())
        await pilot.press("a")  # nothing runs: no modal, a notice instead
        assert not isinstance(app.screen, ConfirmAbort)


class CountingConsole(RunConsole):
    """Counts the RunUpdate batches posted and folded, and the most ever waiting to be folded."""

    def __init__(self, run: RunDir) -> None:
        super().__init__(run, readonly=True)
        self.posted = self.folded = self.most_waiting = self.events_folded = 0

    def post_message(self, message) -> bool:
        if isinstance(message, RunUpdate):
            self.posted += 1
            self.most_waiting = max(self.most_waiting, self.posted - self.folded)
        return super().post_message(message)

    def _fold(self, message: RunUpdate) -> None:
        time.sleep(0.2)  # a UI slower than the reader: without back-pressure, batches would pile up
        super()._fold(message)
        self.folded += 1
        self.events_folded += len(message.events)


@pytest.mark.foreign_events  # lines of a type no reader knows: batching must not care
async def test_a_long_history_is_folded_one_batch_at_a_time(tmp_path: Path) -> None:
    """Attaching to 3.5 MiB of events: several BATCH_BYTES batches, never two waiting, every event folded."""
    run = create_run(write_plan(tmp_path), tmp_path / "run", tmp_path)
    line = {"type": "note", "t": time.time(), "message": "x" * 300}
    count = (7 * BATCH_BYTES // 2) // (len(json.dumps(line)) + 1)
    with run.events.open("a") as fh:
        fh.writelines(json.dumps({**line, "seq": i}) + "\n" for i in range(count))
    app = CountingConsole(RunDir(run.root))
    async with app.run_test(size=(120, 40)) as pilot:
        assert await until(pilot, lambda: app.events_folded == count, 60), (app.events_folded, count)
    assert app.folded >= 4 and app.most_waiting == 1, (app.folded, app.most_waiting)


async def test_a_directory_that_is_not_a_run_is_reported_not_crashed(tmp_path: Path) -> None:
    app = RunConsole(RunDir(tmp_path))
    async with app.run_test() as pilot:
        title = app.query_one("#title")
        assert await until(pilot, lambda: "cannot read" in str(title.render()), 10)


async def test_a_tail_that_fails_is_shown_not_left_frozen(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """events.jsonl turns unreadable while tailing: the title, an events line and an error notice say so."""
    run = create_run(write_plan(tmp_path), tmp_path / "run", tmp_path)

    def unreadable(tail: RunTail) -> None:  # what chmod 000 does, also when the tests run as root
        raise PermissionError(13, "Permission denied", str(run.events))

    monkeypatch.setattr(RunTail, "read_news", unreadable)
    app = RunConsole(RunDir(run.root), readonly=True)
    async with app.run_test(size=(120, 40)) as pilot:
        title = app.query_one("#title")
        assert await until(pilot, lambda: "PermissionError" in str(title.render()), 10)
        failed = f"tail_run failed: PermissionError: [Errno 13] Permission denied: '{run.events}'"
        assert failed in str(title.render()) and "gb10-console attach" in str(title.render())
        assert failed in app.query_one(EventsLog).lines[-1]
        assert [(n.severity, n.message) for n in app._notifications] == [("error", failed)]
        await pilot.pause(1.5)  # the 1 s clock leaves the error in the title
        assert failed in str(title.render()) and app.is_running


async def test_a_runner_that_dies_at_start_is_shown_with_its_reason(tmp_path: Path) -> None:
    run = create_run(write_plan(tmp_path), tmp_path / "run", tmp_path)
    held = RunnerLock(run)
    held.acquire()  # another runner "holds" the run, so the one the console starts must refuse
    try:
        runner = spawn_detached(run)
        assert runner.wait(60) == 2
        app = RunConsole(run, runner)
        async with app.run_test(size=(120, 40)) as pilot:
            log = app.query_one("#events", RichLog)
            assert await until(pilot, lambda: app.runner_status.exit_code == 2)
            await pilot.pause(0.2)
            text = "\n".join(str(line.text) for line in log.lines)
            assert "runner exited with code 2: runner:" in text and "is being run by another runner" in text
            assert "runner alive" in str(app.query_one("#title").render())  # the lock holder is
            held.release()
            title = app.query_one("#title")
            assert await until(pilot, lambda: "runner exited (2)" in str(title.render()), 5)
    finally:
        held.release()


async def test_r_resumes_an_aborted_run_and_is_refused_while_one_runs(tmp_path: Path) -> None:
    """An aborted run: r starts a detached runner that finishes the steps not done; r again is refused."""
    run = create_run(write_plan(tmp_path, requests=3), tmp_path / "run", tmp_path)

    def abort_after_first_step(event: dict) -> None:
        if event["type"] == "step_finished":
            request_abort(run, "test: stop after the first step", by="test")

    assert (await execute(run, [abort_after_first_step])).status == "aborted"
    app = RunConsole(RunDir(run.root))
    async with app.run_test(size=(120, 40)) as pilot:
        assert await until(pilot, lambda: app.runner_status.label == "aborted (resumable)")
        await pilot.press("r")
        assert await until(pilot, lambda: app.runner is not None)
        assert await until(pilot, lambda: app.runner_status.alive or app.runner_status.label == "finished", 60)
        if app.runner_status.alive:
            await pilot.press("r")  # a second runner is refused while one works
        assert await until(pilot, lambda: app.runner_status.label == "finished", 120)
        assert app.runner.wait(10) == 0
        await pilot.press("r")  # finished: nothing to resume, nothing started
    assert run.read_state().status == "finished"
    assert run.read_state().steps_done == 2


@contextlib.contextmanager
def console_on_a_terminal(run: RunDir, sighup_ignored: bool = False) -> Iterator[tuple[subprocess.Popen, int]]:
    """`gb10-console attach` on a pseudo-terminal of its own (`script`): yields the terminal's process and the
    console's pid; both are killed on the way out, whatever the test did."""

    def ignore_sighup() -> None:
        signal.signal(signal.SIGHUP, signal.SIG_IGN)  # inherited across exec, as under nohup

    terminal = subprocess.Popen(
        ["script", "-qec", f"{sys.executable} -m console.cli attach {run.root}", "/dev/null"],
        stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
        preexec_fn=ignore_sighup if sighup_ignored else None,
    )  # fmt: skip
    console: list[psutil.Process] = []
    try:
        assert wait_until(lambda: console.extend(psutil.Process(terminal.pid).children()) or console, 10)
        yield terminal, console[0].pid
    finally:
        for proc in (*console, psutil.Process(terminal.pid)):  # the console runs in a session of its own
            with contextlib.suppress(psutil.NoSuchProcess):
                proc.kill()
        terminal.wait(10)


def test_killing_the_console_never_stops_the_soak(tmp_path: Path) -> None:
    """The console (attached to a detached runner) is SIGKILLed; the runner finishes the soak anyway."""
    run = create_run(write_plan(tmp_path, requests=20, concurrency=2, max_tokens=32), tmp_path / "run", tmp_path)
    runner = spawn_detached(run)
    try:
        with console_on_a_terminal(run) as (terminal, console):
            time.sleep(3)
            assert terminal.poll() is None and not pid_gone(console), "the console did not stay up"
            os.kill(console, signal.SIGKILL)
            assert wait_until(lambda: pid_gone(console), 10)
        assert runner.wait(180) == 0
    finally:
        if runner.poll() is None:
            runner.kill()
            runner.wait(10)
    assert run.read_state().status == "finished"


def test_a_console_whose_terminal_hangs_up_ends_even_with_sighup_ignored(tmp_path: Path) -> None:
    """The terminal goes (ssh dropped) while SIGHUP came ignored from the parent: the console ends (it looks 4 times
    a second) instead of reading an endless EOF at 100 % of a core."""
    run = create_run(write_plan(tmp_path), tmp_path / "run", tmp_path)
    with console_on_a_terminal(run, sighup_ignored=True) as (terminal, console):
        time.sleep(3)
        assert not pid_gone(console), "the console did not stay up"
        os.killpg(terminal.pid, signal.SIGKILL)  # the terminal's side of the pty closes: a hangup
        assert wait_until(lambda: pid_gone(console), 10), "the console outlived its terminal"


async def test_a_runner_exit_noticed_after_the_panels_are_gone_is_dropped_never_a_crash(tmp_path: Path) -> None:
    """Shutting down, the main screen's widgets go first; a runner's exit read after that must not raise."""
    run = create_run(write_plan(tmp_path), tmp_path / "run", tmp_path)
    app = RunConsole(run, readonly=True)
    async with app.run_test(size=(120, 40)) as pilot:
        assert await until(pilot, lambda: app.view is not None, 10)
        for widget in app.query("#steps, #arms, CurrentStep, EventsLog"):
            await widget.remove()
        app.post_message(RunnerChanged(RunnerStatus("interrupted (resumable)", False, 1, "killed", dead=True)))
        await pilot.pause(0.2)
        assert app.is_running and app.runner_status.exit_code == 1
    assert app.return_code in (None, 0)
