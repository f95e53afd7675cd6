"""SummaryTable: summary.json's per-arm results; hidden until the runner writes a summary (a damaged one is said
in its border)."""

from __future__ import annotations

from textual.widgets import DataTable

from engine.units import number_text
from runners.replay.pauses import paused_text
from runners.report.summary_model import DamagedSummary, Summary

# wall s (sum): the arm's primary steps added up (summary.md's Arms table), not the headline's mean per repetition
SUMMARY_COLUMNS = (
    "arm", "arm env", "ok", "failed", "wall s (sum)", "paused s", "TTFT p50/p95", "TPOT p50/p95", "tok/s",
)  # fmt: skip


class SummaryTable(DataTable):
    """One row per arm of the latest summary.json; its border says the run's status."""

    def __init__(self, **kwargs) -> None:
        super().__init__(cursor_type="none", **kwargs)

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
                row.arm, row.arm_env, str(s.ok), str(s.failed), number_text(s.wall_s, 2),
                paused_text(row.paused_s, row.paused_excluded_s),
                f"{number_text(s.ttft_p50_ms)}/{number_text(s.ttft_p95_ms)}",
                f"{number_text(s.tpot_p50_ms, 2)}/{number_text(s.tpot_p95_ms, 2)}",
                number_text(s.output_tok_s),
            )  # fmt: skip
        self.display = True
