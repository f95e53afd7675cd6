"""The serve panel: a clock that moves changes its cell in place; a row whose shape changed rebuilds the table."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

from textual.app import App, ComposeResult
from textual.pilot import Pilot

from console.panels.serve_table import ServeTable
from console.views.run_view import ArmView, RunView

T0 = 1_000_000.0


class TableApp(App[None]):
    def compose(self) -> ComposeResult:
        yield ServeTable(id="arms")


def two_arms() -> RunView:
    view = RunView(run_id="r")
    view.arms = {
        "baseline": ArmView("baseline", serve="ready", ready_t=T0, health="ok"),
        "wo-split": ArmView("wo-split", env={"VLLM_WO_SPLIT": "1"}, serve="starting"),
    }
    return view


@contextlib.asynccontextmanager
async def shown(view: RunView) -> AsyncIterator[tuple[Pilot, ServeTable, list]]:
    """A ServeTable showing `view` at T0 + 5 s; yields the pilot, the table and its column keys then."""
    app = TableApp()
    async with app.run_test(size=(120, 10)) as pilot:
        table = app.query_one(ServeTable)
        table.update_view(view, T0 + 5)
        await pilot.pause()
        yield pilot, table, list(table.columns)  # a rebuild makes new column keys


async def test_uptime_ticking_updates_its_cell_without_rebuilding_the_table() -> None:
    view = two_arms()
    async with shown(view) as (pilot, table, columns):
        table.update_view(view, T0 + 6)
        await pilot.pause()
        assert list(table.columns) == columns
        assert table.get_row_at(0)[3] == "00:00:06"
        assert table.get_row_at(1)[3] == "-"


async def test_a_cell_that_changes_width_or_a_new_arm_rebuilds_the_table() -> None:
    view = two_arms()
    async with shown(view) as (pilot, table, columns):
        view.arms["baseline"].health, view.arms["baseline"].failing_t = "FAILING", T0 + 2
        table.update_view(view, T0 + 5)
        await pilot.pause()
        assert list(table.columns) != columns
        assert table.get_row_at(0)[2] == "FAILING 3s"
        view.arms["third"] = ArmView("third")
        table.update_view(view, T0 + 5)
        await pilot.pause()
        assert [table.get_row_at(i)[0] for i in range(table.row_count)] == ["baseline", "wo-split", "third"]
