"""ServeTable: the serve panel, one row per arm: serve state, health, uptime, restarts, where its env was verified
and its env keys as the target runs them."""

from __future__ import annotations

import time

from rich.cells import cell_len
from textual.coordinate import Coordinate
from textual.widgets import DataTable

from console.views.run_view import ArmView, RunView

ARM_COLUMNS = ("arm", "serve", "health", "up", "restarts", "verified", "arm env")  # steps: see the tree; the live
# state first, so a narrow panel cuts the long cells (the env is in the summary too), never the state
ENV_CELL_CHARS = 40


def env_cell(arm: ArmView) -> str:
    """The arm's own keys, with the value the target reported where it did (`-` for an arm with no env)."""
    if not arm.env:
        return "-"
    shown = {**arm.env, **{k: v for k, v in (arm.effective or {}).items() if k in arm.env}}
    text = " ".join(f"{k}={v}" for k, v in shown.items())
    return text if len(text) <= ENV_CELL_CHARS else text[: ENV_CELL_CHARS - 1] + "…"


def verified_cell(arm: ArmView) -> str:
    """`EngineCore pid 4242` (where it was verified), or the status: unverified, MISMATCH."""
    if arm.env_status == "verified":
        return (arm.env_where or "yes").replace("the target's ", "")
    return "MISMATCH" if arm.env_status == "mismatch" else arm.env_status


class ServeTable(DataTable):
    """The arms and their serve target; its border names the target. A clock that moves changes its cell in place;
    the table is rebuilt only when an arm or a cell's width changed."""

    def __init__(self, **kwargs) -> None:
        super().__init__(cursor_type="none", zebra_stripes=True, **kwargs)
        self._shown_rows: list[tuple[str, ...]] = []  # what is shown

    def on_mount(self) -> None:
        """Name the panel and its columns."""
        self.border_title = "arms"
        self.add_columns(*ARM_COLUMNS)

    def update_view(self, view: RunView, now: float) -> None:
        """Show `view`'s arms at time `now` (it is asked every second and on every batch of events)."""
        title = f"serve: {view.target}" if view.target else "arms"
        if self.border_title != title:
            self.border_title = title
        rows = []
        for name, arm in view.arms.items():
            up = arm.uptime(now)
            uptime = time.strftime("%H:%M:%S", time.gmtime(up)) if up is not None else "-"
            row = (name, arm.serve, arm.health_text(now), uptime, str(arm.restarts), verified_cell(arm), env_cell(arm))
            rows.append(row)
        if rows == self._shown_rows:
            return
        if _shape(rows) != _shape(self._shown_rows):  # another arm, or a cell of another width: a new layout
            self._rebuild(rows)
            return
        for index, (row, shown) in enumerate(zip(rows, self._shown_rows, strict=True)):  # clocks moved: their cells
            for column, (cell, was) in enumerate(zip(row, shown, strict=True)):
                if cell != was:
                    self.update_cell_at(Coordinate(index, column), cell)
        self._shown_rows = rows

    def _rebuild(self, rows: list[tuple[str, ...]]) -> None:
        """Show `rows` afresh: column widths follow what is shown now, not the widest value ever shown."""
        self._shown_rows = rows
        self.clear(columns=True)
        self.add_columns(*ARM_COLUMNS)
        for row in rows:
            self.add_row(*row, key=row[0])


def _shape(rows: list[tuple[str, ...]]) -> list[tuple[str | int, ...]]:
    """Each row's arm and its cells' widths."""
    return [(row[0], *(cell_len(cell) for cell in row)) for row in rows]
