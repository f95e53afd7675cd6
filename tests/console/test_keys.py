"""The key table (console/keys.py) is the one description of every key: the bindings, the command palette and the
help agree with it, and --readonly takes the controls out of all three."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from rich.text import Text
from textual.app import App

from console.app import RunConsole
from console.keys import ABORT, CONTROL_ACTIONS, GATES, KEYS, LOGS, MAIN, TIMELINE, Shown, screen_groups, screen_keys
from console.screens.abort_screen import ConfirmAbort
from console.screens.gates_screen import GatesScreen
from console.screens.help_screen import keys_help
from console.screens.logs_screen import LogsScreen
from console.screens.timeline_screen import TimelineScreen
from runners.run.rundir import RunDir, RunnerLock
from runners.run.runs import create_run
from tests.support.plans import write_plan
from tests.support.waits import pilot_until

SCREENS = {MAIN: RunConsole, LOGS: LogsScreen, GATES: GatesScreen, TIMELINE: TimelineScreen, ABORT: ConfirmAbort}


def binding_rows(bindings) -> list[tuple]:
    """What a binding says: key, action, footer title, shown in the footer, priority."""
    return [(b.key, b.action, b.description, b.show, b.priority) for b in bindings]


def plain_help(readonly: bool) -> str:
    """The help as shown, its wrapping undone: one line of words."""
    return " ".join(Text.from_markup(keys_help(readonly)).plain.replace("\u00a0", " ").split())


@pytest.mark.parametrize("screen", list(SCREENS))
def test_every_screen_binds_its_rows_of_the_table_and_nothing_else(screen: str) -> None:
    rows = [(k.key, k.action, k.title, k.footer, k.priority) for k in screen_keys(screen)]
    assert binding_rows(SCREENS[screen].BINDINGS) == rows
    for key in screen_keys(screen):  # every action exists on its screen (or the app's)
        owner = App if key.action.startswith("app.") else SCREENS[screen]
        name = key.action.removeprefix("app.").split("(")[0]
        assert callable(getattr(owner, f"action_{name}", None)), key


def test_the_table_has_one_row_per_key_of_a_screen() -> None:
    pairs = [(k.screen, k.key) for k in KEYS]
    assert len(pairs) == len(set(pairs))
    assert {"abort", "resume", "pause"} == CONTROL_ACTIONS


def test_the_help_lists_every_main_key_and_the_keys_of_the_screens_they_open() -> None:
    full, readonly = plain_help(False), plain_help(True)
    for key in screen_keys(MAIN):
        words = " ".join((key.help + (f". {key.detail}" if key.detail else "")).split())
        control = key.action in CONTROL_ACTIONS
        assert words in full and (words in readonly) is not control, key
        assert f"[b]{key.label}[/b]" in keys_help(False)
        assert (f"[b]{key.label}[/b]" in keys_help(True)) is not control
    for screen in (LOGS, GATES, TIMELINE, ABORT):
        assert all(group in full for group in screen_groups(screen)), screen
    assert "n/N match" in full and "esc/l back" in full and "y abort, n/esc keep running" in full
    assert "y abort" not in readonly and "Read-only console" in readonly


@pytest.fixture
def created_run(tmp_path: Path) -> RunDir:
    return create_run(write_plan(tmp_path), tmp_path / "run", tmp_path)


def shown_controls(app: RunConsole) -> dict[str, set[str]]:
    """The control actions the footer, the key handling and the palette offer now."""
    footer = {a.binding.action for a in app.screen.active_bindings.values() if a.binding.show}
    palette = {c.title for c in app.get_system_commands(app.screen)}
    return {
        "footer": footer & CONTROL_ACTIONS,
        "run": {a for a in CONTROL_ACTIONS if app.check_action(a, ())},
        "palette": {k.action for k in screen_keys(MAIN) if k.palette in palette} & CONTROL_ACTIONS,
    }


@pytest.mark.parametrize("readonly", [False, True], ids=["controls", "readonly"])
async def test_the_footer_and_the_palette_agree_with_the_table_runner_or_not(created_run: RunDir, readonly: bool
                                                                              ) -> None:  # fmt: skip
    app = RunConsole(created_run, readonly=readonly)
    async with app.run_test(size=(120, 40)) as pilot:
        assert await pilot_until(pilot, lambda: app.runner_status.label != "opening", 10)
        ours = list(app.get_system_commands(app.screen))[len(list(App.get_system_commands(app, app.screen))) :]
        always = [k for k in screen_keys(MAIN) if k.palette and k.shown is Shown.ALWAYS]
        assert [(c.title, c.help) for c in ours if c.title in {k.palette for k in always}] == [
            (k.palette, k.palette_help) for k in always
        ]  # fmt: skip
        by_title = {k.palette: k for k in screen_keys(MAIN) if k.palette}
        assert all(c.callback == getattr(app, f"action_{by_title[c.title].action}") for c in ours)
        assert all(re.search(rf"\({re.escape(by_title[c.title].label)}\)$", c.help) for c in ours)
        active = app.screen.active_bindings
        for key in screen_keys(MAIN):
            if key.shown is Shown.ALWAYS:
                assert active[key.key].binding.action == key.action, key
        idle = set() if readonly else {"resume"}  # no runner, not finished: resume only
        assert shown_controls(app) == {"footer": idle, "run": idle, "palette": idle}
        lock = RunnerLock(created_run)
        lock.acquire()
        try:
            assert await pilot_until(pilot, lambda: app.runner_status.alive, 10)
            working = set() if readonly else {"abort", "pause"}
            assert shown_controls(app) == {"footer": working, "run": working, "palette": working}
        finally:
            lock.release()
