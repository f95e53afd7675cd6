"""SummaryTable: summary.json's per-arm results and verdicts; hidden until the runner writes a summary (a damaged
one is said in its border)."""

from __future__ import annotations

from textual.geometry import Size
from textual.widgets import DataTable

from engine.units import number_text
from runners.replay.pauses import paused_text
from runners.report.summary_model import DamagedSummary, Summary

# wall s (sum): the arm's primary steps added up (summary.md's Arms table), not the headline's mean per repetition
SUMMARY_COLUMNS = (
    "arm",
    "verdict",
    "arm env",
    "ok",
    "failed",
    "wall s (sum)",
    "paused s",
    "TTFT p50/p95",
    "TPOT p50/p95",
    "tok/s",
)  # fmt: skip  (the verdict second: it shows at 80 columns)


class SummaryTable(DataTable):
    """One row per arm of the latest summary.json, its verdict beside its name; its border says the run's status."""

    def __init__(self, **kwargs) -> None:
        super().__init__(cursor_type="none", **kwargs)

    def watch_virtual_size(self, old: Size, new: Size) -> None:
        """Lay the screen out again once the rows' height is known: Textual can lay out a table whose height is
        `auto` before it has measured its new rows, and keep that (an empty summary box, seen now and then)."""
        if new.height != old.height:
            self.call_after_refresh(self.refresh, layout=True)

    def update_view(self, summary: Summary | DamagedSummary) -> None:
        """Show `summary` (summary.json as read; a damaged one says so in the border) and make the table visible."""
        self.clear(columns=True)
        self.add_columns(*SUMMARY_COLUMNS)
        if isinstance(summary, DamagedSummary):
            self.border_title = "summary: damaged (see the events log)"
            self.display = True
            return
        self.border_title = f"summary: {summary.status}"
        for row in summary.arms:
            s = row.stats
            self.add_row(
                row.arm, row.verdict or "-", row.arm_env, str(s.ok), str(s.failed), number_text(s.wall_s, 2),
                paused_text(row.paused_s, row.paused_excluded_s),
                f"{number_text(s.ttft_p50_ms)}/{number_text(s.ttft_p95_ms)}",
                f"{number_text(s.tpot_p50_ms, 2)}/{number_text(s.tpot_p95_ms, 2)}",
                number_text(s.output_tok_s),
            )  # fmt: skip
        self.display = True
