"""The gates screen (`g`) shows summary.json's region timings under the gates: the table and how it was calibrated."""

from __future__ import annotations

from pathlib import Path

from textual.widgets import DataTable, Static

from console.app import RunConsole
from console.screens.gates_screen import GatesScreen, region_timing_steps
from runners.plan.steps import StepKey
from runners.replay.measurement_check import MeasurementCheck
from runners.replay.pauses import PauseAccount
from runners.report.summary_model import DoneStep, PendingStep, Summary
from runners.run.runs import create_run
from tests.support.plans import write_plan

CAPTURED = {
    "status": "captured", "reason": "", "file": "region_timings.npy", "unit": "us",
    "calibration": {"how": "tick_ns", "scale": 0.001, "note": None},
    "regions": [
        {"region": "load", "active_ctas": 6, "median_us": 0.1025, "p99_us": 0.10495, "median_ticks": 102.5,
         "p99_ticks": 104.95, "kind": "parallel work"},
        {"region": "gather", "active_ctas": 1, "median_us": 0.3, "p99_us": 0.3, "median_ticks": 300.0,
         "p99_ticks": 300.0, "kind": "single elected CTA"},
    ],
}  # fmt: skip


def _step(mode: str, phase: str, regions: dict | None) -> DoneStep:
    return DoneStep(step=StepKey("a", mode, phase, 0), kind="sharegpt", done=True, results="", stats=None,
                    pause=PauseAccount(), server_latency=None, measurement=MeasurementCheck("unchecked"), profile=None,
                    region_timings=regions)  # fmt: skip


SUMMARY = Summary(
    run_id="r1",
    plan="mini",
    status="finished",
    steps=(
        _step("primary", "replay", None),
        _step("supplementary", "regions", CAPTURED),
        _step("supplementary", "late", {"status": "missing", "reason": "no /tmp/x.npy within 30 s [after the replay]"}),
        PendingStep(
            step=StepKey("a", "supplementary", "later", 0), kind="sharegpt", done=False, results="", stats=None
        ),
    ),
)  # fmt: skip  (a summary.json that is not one reads as damaged: tests/report/test_summary_model.py)


def test_region_timing_steps_come_from_summary_json() -> None:
    steps = region_timing_steps(SUMMARY)
    assert [(path, line, unit) for path, line, _rows, unit in steps] == [
        ("a/supplementary/regions/0", "µs from tick_ns (1.000 ns per tick)", "µs"),
        ("a/supplementary/late/0", "missing: no /tmp/x.npy within 30 s [after the replay]", "ticks"),
    ]
    assert steps[0][2] == [("load", "6", "0.10", "0.10", "parallel work"), ("gather", "1", "0.30", "0.30",
                           "single elected CTA")]  # fmt: skip
    assert region_timing_steps(Summary(run_id="r1", plan="mini", status="finished")) == []


async def test_g_shows_the_region_table_under_the_gates(tmp_path: Path) -> None:
    app = RunConsole(create_run(write_plan(tmp_path), tmp_path / "run", tmp_path))
    async with app.run_test(size=(120, 40)) as pilot:
        await pilot.pause(0.3)
        app.summary = SUMMARY
        await pilot.press("g")
        assert isinstance(app.screen, GatesScreen)
        table = app.screen.query_one("#regions", DataTable)
        assert [c.label.plain for c in table.columns.values()][3:5] == ["median µs", "p99 µs"]
        assert table.row_count == 2 and table.get_row_at(1)[:2] == ["a/supplementary/regions/0", "gather"]
        notes = str(app.screen.query_one("#region-notes", Static).render())
        assert "a/supplementary/late/0: missing: no /tmp/x.npy within 30 s [after the replay]" in notes
        await pilot.press("escape")
        app.summary = Summary(run_id="r1", plan="mini", status="finished")
        await pilot.press("g")
        assert not app.screen.query("#regions")
