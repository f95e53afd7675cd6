"""The gates screen (`g`): every gate of the run's latest summary, its status, verdict and criteria, and
below them the region timings of the steps that asked for a dump (summary.json `steps[].region_timings`)."""

from __future__ import annotations

from rich.text import Text
from textual.app import ComposeResult
from textual.screen import Screen
from textual.widgets import DataTable, Static

from console.keys import GATES, bindings
from console.panels.key_footer import KeyFooter
from runners.evidence.region_table import calibration_line, region_rows
from runners.gates.result import STATUS_LABEL
from runners.report.summary_model import DamagedSummary, DoneStep, Summary

STATUS_STYLE = {"pass": "green", "fail": "bold red", "no_data": "yellow"}
NO_SUMMARY = (
    "No gate results yet: the runner judges the gates at the end of each serve session and writes "
    "summary.json; `gb10-console report RUN_DIR` regenerates it at any time."
)


def verdict_line(summary: Summary) -> str:
    """`arm: verdict` for every arm with a verdict, in plan order ("" when there are none)."""
    return "   ".join(f"{arm}: {verdict}" for arm, verdict in summary.verdicts.items())


def gate_rows(summary: Summary) -> list[tuple[str, str, Text, str, str]]:
    """(gate, arm, status, verdict, criteria) rows from summary.json's `gates`."""
    rows = []
    for gate in summary.gates:
        label = Text(STATUS_LABEL.get(gate.status, gate.status), style=STATUS_STYLE.get(gate.status, ""))
        criteria = gate.failed_criteria
        shown = criteria[0] if criteria else ""
        if len(criteria) > 1:
            shown += f"  (+{len(criteria) - 1} more)"
        rows.append((gate.name, gate.arm or "run", label, gate.verdict or "", shown))
    return rows


def region_timing_steps(summary: Summary) -> list[tuple[str, str, list[tuple[str, str, str, str, str]], str]]:
    """(step, calibration line, region rows, unit) per step of summary.json with a region-timing section."""
    out = []
    for row in summary.steps:
        if not isinstance(row, DoneStep) or not row.region_timings:
            continue
        regions = row.region_timings
        unit = "µs" if regions.get("unit") == "us" else "ticks"
        out.append((row.step.path, calibration_line(regions), region_rows(regions), unit))
    return out


class GatesScreen(Screen[None]):
    """The gate table of one summary; `g` or escape goes back."""

    BINDINGS = bindings(GATES)  # console/keys.py
    DEFAULT_CSS = """
    GatesScreen #verdicts { height: auto; padding: 0 1; background: $boost; }
    GatesScreen DataTable { height: 1fr; }
    GatesScreen #region-notes { height: auto; padding: 0 1; background: $boost; }
    """

    def __init__(self, summary: Summary | DamagedSummary | None) -> None:
        super().__init__()
        self.summary = summary

    def compose(self) -> ComposeResult:
        summary = self.summary
        if summary is None:
            yield Static(NO_SUMMARY, id="verdicts")
        elif isinstance(summary, DamagedSummary):
            yield Static(Text(summary.reason), id="verdicts")
        else:
            line = verdict_line(summary) or "no verdicts"
            yield Static(f"[b]{summary.run_id}[/b] ({summary.status})   {line}", id="verdicts")
        yield DataTable(id="gates", cursor_type="row", zebra_stripes=True)
        steps = region_timing_steps(summary) if isinstance(summary, Summary) else []
        if steps:
            notes = Text("\n").join(
                Text.assemble(("region timings ", "bold"), f"{path}: {line}") for path, line, _rows, _unit in steps
            )
            yield Static(notes, id="region-notes")
            yield DataTable(id="regions", cursor_type="row", zebra_stripes=True)
        yield KeyFooter()

    def on_mount(self) -> None:
        """Fill the table."""
        table = self.query_one("#gates", DataTable)
        table.add_columns("gate", "arm", "status", "verdict", "failed or unjudged criteria")
        if not isinstance(self.summary, Summary):
            return
        for row in gate_rows(self.summary):
            table.add_row(*row)
        steps = region_timing_steps(self.summary)
        if steps:
            regions = self.query_one("#regions", DataTable)
            units = {unit for _path, _line, rows, unit in steps if rows}
            shared = units.pop() if len(units) == 1 else None  # mixed: each cell names its unit
            head = f" {shared}" if shared else ""
            regions.add_columns("step", "region", "active CTAs", f"median{head}", f"p99{head}", "kind")
            for path, _line, rows, unit in steps:
                for region, ctas, median, p99, kind in rows:
                    tail = "" if shared else f" {unit}"
                    regions.add_row(path, region, ctas, median + tail, p99 + tail, kind)
