"""The gates screen (`g`) shows summary.json's region timings under the gates: the table and how it was calibrated."""

from __future__ import annotations

from pathlib import Path

from textual.widgets import DataTable, Static

from console.app import RunConsole
from console.screens.gates_screen import GatesScreen, region_timing_steps
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
SUMMARY = {
    "run_id": "r1",
    "status": "finished",
    "gates": [],
    "steps": [
        {"step": {"arm": "a", "mode": "primary", "phase": "replay", "rep": 0}, "region_timings": None},
        {"step": {"arm": "a", "mode": "supplementary", "phase": "regions", "rep": 0}, "region_timings": CAPTURED},
        {"step": {"arm": "a", "mode": "supplementary", "phase": "late", "rep": 0},
         "region_timings": {"status": "missing", "reason": "no /tmp/x.npy within 30 s [after the replay]"}},
        {"step": "damaged", "region_timings": CAPTURED},
    ],
}  # fmt: skip


def test_region_timing_steps_come_from_summary_json() -> None:
    steps = region_timing_steps(SUMMARY)
    assert [(path, line, unit) for path, line, _rows, unit in steps] == [
        ("a/supplementary/regions/0", "µs from tick_ns (1.000 ns per tick)", "µs"),
        ("a/supplementary/late/0", "missing: no /tmp/x.npy within 30 s [after the replay]", "ticks"),
    ]
    assert steps[0][2] == [("load", "6", "0.10", "0.10", "parallel work"), ("gather", "1", "0.30", "0.30",
                           "single elected CTA")]  # fmt: skip
    assert region_timing_steps({}) == []


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
        app.summary = {"run_id": "r1", "status": "finished", "gates": []}
        await pilot.press("g")
        assert not app.screen.query("#regions")
