"""ServeTable: the serve panel, one row per arm (its effective WO_SPLIT, env check, serve state, health, uptime)."""

from __future__ import annotations

import time

from textual.widgets import DataTable

from console.views.run_view import RunView

ARM_COLUMNS = ("arm", "WO_SPLIT", "env", "serve", "health", "up", "restarts")  # steps: see the tree


class ServeTable(DataTable):
    """The arms and their serve target; its border names the target. Rebuilt only when a row changed."""

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
            wo_split = (arm.effective or {}).get("CUTE_WO_SPLIT", "-")
            up = arm.uptime(now)
            uptime = time.strftime("%H:%M:%S", time.gmtime(up)) if up is not None else "-"
            rows.append((name, wo_split, arm.env_status, arm.serve, arm.health_text(now), uptime, str(arm.restarts)))
        if rows == self._shown_rows:
            return
        self._shown_rows = rows
        self.clear(columns=True)  # column widths follow what is shown now, not the widest value ever shown
        self.add_columns(*ARM_COLUMNS)
        for row in rows:
            self.add_row(*row, key=row[0])
