"""The console reads events typed: lines read back once (`parse_event`) fold into the views by class, a line that
cannot be read changes nothing and is said once per type, and the headless printer prints each line's time. A
summary.json that is not one is said to be damaged, never raised or shown empty without a word."""

from __future__ import annotations

from pathlib import Path

from rich.console import Console
from textual.widgets import DataTable, Static

from console.app import RunConsole
from console.cli.headless import HeadlessPrinter, summary_table
from console.panels.events_log import EventsLog
from console.screens.gates_screen import GatesScreen
from console.views.run_view import RunView, StepView
from console.views.watchdog_view import WatchdogView
from runners.plan.steps import StepKey
from runners.run.event_types import LoggedEvent, StepFailed, StepStarted, parse_event
from runners.run.events import event_line
from runners.run.runs import create_run
from tests.support.plans import write_plan
from tests.support.waits import pilot_until

STEP = StepKey("split1", "primary", "replay", 0)


def test_a_line_that_cannot_be_read_changes_nothing_and_is_said_once_per_type() -> None:
    view = RunView(status="running", steps={STEP: StepView(STEP)})
    bad = {"v": 1, "t": 5.0, "type": "step_started", "step": STEP.as_dict(), "requests": "six"}
    line = view.apply(parse_event(bad))
    assert line is not None and line.startswith("events.jsonl: a step_started line could not be read")
    assert "field 'requests' is not int: 'six'" in line and "field 'kind' is missing" in line
    assert view.steps[STEP].status == "pending" and view.current is None and view.last_t == 5.0
    assert view.apply(parse_event({**bad, "t": 6.0})) is None  # the next one is counted, not said again
    assert view.unreadable == {"step_started": 2} and view.log == [line] and view.last_t == 6.0


def test_a_payload_of_another_shape_is_said_not_raised() -> None:
    view = RunView(status="running", steps={STEP: StepView(STEP)})
    line = view.apply(parse_event({"v": 1, "t": 5.0, "type": "step_finished", "step": STEP.as_dict(),
                                   "stats": {"wall_s": "long"}}))  # fmt: skip
    assert line is not None and line.startswith("events.jsonl: a step_finished line could not be folded (ValueError")
    assert view.log == [line]


def test_a_type_this_version_does_not_know_is_ignored_but_its_time_counts() -> None:
    view = RunView(status="running")
    assert view.apply(parse_event({"v": 1, "t": 9.0, "type": "from_the_future", "x": 1})) is None
    assert view.log == [] and view.unreadable == {} and view.last_t == 9.0


def test_the_watchdog_view_skips_an_unreadable_guard_event_and_a_line_given_as_a_record() -> None:
    view = WatchdogView()
    view.apply(parse_event({"v": 1, "t": 1.0, "type": "watchdog_level", "level": "kill"}))
    assert (view.skipped, view.records, view.level) == (1, 0, "unknown")
    assert "watchdog_level: field 'previous' is missing" in view.last_skip
    view.apply(parse_event({"v": 1, "t": 1.0, "type": "step_failed", "step": {}}))  # not the guard's: ignored
    assert (view.skipped, view.records) == (1, 0)
    view.apply({"v": 1, "t": 1.0, "type": "guard_lost", "reason": "x"})  # a line not read back: said, not folded
    assert view.skipped == 2 and "read it back with parse_event" in view.last_skip and view.level == "unknown"


def test_the_headless_printer_reads_each_line_once_and_stamps_it_with_its_time() -> None:
    console = Console(record=True, width=200)
    printer = HeadlessPrinter(console, RunView(status="running"))
    printer.t0 = 100.0
    printer(event_line(StepStarted(STEP, "sharegpt", 6, 2, open_loop=False), 101.5))
    printer(event_line(StepFailed(STEP, "target died [exit 137]"), 103.25))
    printer({"v": 1, "t": 104.0, "type": "step_failed", "step": STEP.as_dict()})
    text = console.export_text()
    assert "    1.5s split1/primary/replay/0: started (6 requests, concurrency 2)" in text
    assert "    3.2s split1/primary/replay/0: FAILED: target died [exit 137]" in text  # brackets kept, not markup
    assert "    4.0s events.jsonl: a step_failed line could not be read" in text
    assert isinstance(parse_event(event_line(StepFailed(STEP, "x"), 1.0)), LoggedEvent)


async def test_a_damaged_summary_is_said_in_the_table_the_events_log_the_gates_and_the_headless_table(
    tmp_path: Path,
) -> None:
    run = create_run(write_plan(tmp_path), tmp_path / "run", tmp_path)
    run.summary_json.write_text('{"run_id": "r", "status": "finished", "arms": "garbage"}')
    app = RunConsole(run, readonly=True)
    async with app.run_test(size=(140, 40)) as pilot:
        table = app.query_one("#summary", DataTable)
        assert await pilot_until(pilot, lambda: "damaged" in str(table.border_title), 10), table.border_title
        assert table.display and table.row_count == 0
        said = app.query_one(EventsLog).lines[-1]
        assert "summary.json is damaged or was written by an older version: plan: Field required" in said
        assert f"gb10-console report {run.root}" in said
        await pilot.press("g")
        assert isinstance(app.screen, GatesScreen)
        assert "is damaged" in str(app.screen.query_one("#verdicts", Static).render())
    rendered = Console(width=300, record=True)
    rendered.print(summary_table(run))
    assert "is damaged or was written by an older version" in rendered.export_text()
