"""The gates screen (`g`): every gate of the run's latest summary, its status, verdict and criteria."""

from __future__ import annotations

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.screen import Screen
from textual.widgets import DataTable, Footer, Static

STATUS_STYLE = {"pass": "green", "fail": "bold red", "no_data": "yellow"}
NO_SUMMARY = (
    "No gate results yet: the runner judges the gates at the end of each serve session and writes "
    "summary.json; `gb10-console report RUN_DIR` regenerates it at any time."
)


def verdict_line(summary: dict) -> str:
    """`arm: verdict` for every arm with a verdict, in plan order ("" when there are none)."""
    verdicts = summary.get("verdicts") or {}
    return "   ".join(f"{arm}: {verdict}" for arm, verdict in verdicts.items())


def gate_rows(summary: dict) -> list[tuple[str, str, Text, str, str]]:
    """(gate, arm, status, verdict, criteria) rows from summary.json's `gates` (tolerant of missing fields)."""
    rows = []
    for gate in summary.get("gates") or []:
        if not isinstance(gate, dict):
            continue
        status = str(gate.get("status", "?"))
        criteria = [str(c) for c in gate.get("failed_criteria") or []]
        shown = criteria[0] if criteria else ""
        if len(criteria) > 1:
            shown += f"  (+{len(criteria) - 1} more)"
        rows.append((
            str(gate.get("name", "?")), str(gate.get("arm") or "run"), Text(status, style=STATUS_STYLE.get(status, "")),
            str(gate.get("verdict") or ""), shown,
        ))  # fmt: skip
    return rows


class GatesScreen(Screen[None]):
    """The gate table of one summary; `g` or escape goes back."""

    BINDINGS = [Binding("escape", "app.pop_screen", "Back"), Binding("g", "app.pop_screen", "Back")]
    DEFAULT_CSS = """
    GatesScreen #verdicts { height: auto; padding: 0 1; background: $boost; }
    GatesScreen DataTable { height: 1fr; }
    """

    def __init__(self, summary: dict | None) -> None:
        super().__init__()
        self.summary = summary

    def compose(self) -> ComposeResult:
        if not self.summary:
            yield Static(NO_SUMMARY, id="verdicts")
        else:
            status = self.summary.get("status", "?")
            line = verdict_line(self.summary) or "no verdicts"
            yield Static(f"[b]{self.summary.get('run_id', '')}[/b] ({status})   {line}", id="verdicts")
        yield DataTable(id="gates", cursor_type="row", zebra_stripes=True)
        yield Footer()

    def on_mount(self) -> None:
        """Fill the table."""
        table = self.query_one("#gates", DataTable)
        table.add_columns("gate", "arm", "status", "verdict", "failed or unjudged criteria")
        for row in gate_rows(self.summary or {}):
            table.add_row(*row)
