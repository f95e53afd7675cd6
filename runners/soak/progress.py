"""`step_progress` events from request completions: live TTFT/TPOT/ITL for the console, at most twice a second."""

from __future__ import annotations

import time

from runners.plan.steps import StepKey
from runners.replay.metrics import phase_stats
from runners.replay.records import RequestRecord
from runners.run.event_types import StepProgress
from runners.run.events import EventLog

PROGRESS_EVERY_S = 0.5


class ProgressReporter:
    """Turns request completions into `step_progress` events, at most one per PROGRESS_EVERY_S."""

    def __init__(self, events: EventLog, step: StepKey, total: int) -> None:
        self.events, self.step, self.total = events, step, total
        self.records: list[RequestRecord] = []
        self.t0 = time.perf_counter()
        self.last = 0.0

    def add(self, rec: RequestRecord) -> None:
        """Count one finished request."""
        self.records.append(rec)
        self.flush(force=len(self.records) == self.total)

    def flush(self, force: bool = False) -> None:
        """Emit a progress event if one is due (or `force`)."""
        now = time.perf_counter()
        if not force and now - self.last < PROGRESS_EVERY_S:
            return
        self.last = now
        stats = phase_stats(self.records, now - self.t0)
        self.events.emit(
            StepProgress(
                step=self.step,
                total=self.total,
                completed=stats.requests,
                failed=stats.failed,
                output_tokens=stats.output_tokens,
                ttft_p50_ms=stats.ttft_p50_ms,
                ttft_p95_ms=stats.ttft_p95_ms,
                tpot_p50_ms=stats.tpot_p50_ms,
                tpot_p95_ms=stats.tpot_p95_ms,
                itl_p50_ms=stats.itl_p50_ms,
                itl_p95_ms=stats.itl_p95_ms,
                errors=stats.errors,
            )
        )
