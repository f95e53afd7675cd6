"""Nothing is rebuilt on a key that changes nothing: the gates screen is built once per summary, a footer that
would show the same keys is not recomposed; and the start-up objects are kept out of the GC's full collections
while the console runs."""

from __future__ import annotations

import gc
from pathlib import Path

import pytest

from console.app import RunConsole
from console.panels.key_footer import KeyFooter
from console.screens.gates_screen import GatesScreen
from runners.report.summary_model import Summary
from runners.run.rundir import RunDir
from runners.run.runs import create_run
from tests.support.plans import write_plan
from tests.support.waits import pilot_until


@pytest.fixture
def created_run(tmp_path: Path) -> RunDir:
    return create_run(write_plan(tmp_path), tmp_path / "run", tmp_path)


async def test_g_shows_the_same_gates_screen_until_the_summary_changes(created_run: RunDir, monkeypatch) -> None:
    composed: list[KeyFooter] = []
    compose = KeyFooter.compose

    def counted(footer: KeyFooter):
        composed.append(footer)
        return compose(footer)

    monkeypatch.setattr(KeyFooter, "compose", counted)
    app = RunConsole(created_run, readonly=True)
    async with app.run_test(size=(120, 40)) as pilot:
        assert await pilot_until(pilot, lambda: app.runner_status.label != "opening", 10)
        await pilot.press("g")
        first = app.screen
        assert isinstance(first, GatesScreen)
        await pilot.press("escape")
        await pilot.pause(0.1)
        before = len(composed)
        for _ in range(3):
            await pilot.press("g")
            assert app.screen is first
            await pilot.press("escape")
            await pilot.pause(0.1)
        assert len(composed) == before  # the same keys on both screens each time: no footer rebuilt
        app.summary = Summary(run_id="r", plan="mini", status="finished", verdicts={"split1": "baseline"})
        await pilot.press("g")
        assert isinstance(app.screen, GatesScreen) and app.screen is not first and app.screen.summary is app.summary
        assert not app.is_screen_installed(first)  # the old one is let go


async def test_the_start_up_objects_are_frozen_out_of_the_gc_while_the_console_runs(created_run: RunDir) -> None:
    app = RunConsole(created_run, readonly=True)
    async with app.run_test(size=(80, 24)) as pilot:
        assert await pilot_until(pilot, lambda: gc.get_freeze_count() > 0, 10)
    assert gc.get_freeze_count() == 0  # given back on exit: a process that goes on collects them
