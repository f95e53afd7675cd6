"""`--headless`: the soak runs in this process and prints progress with rich, for scripts and CI."""

from __future__ import annotations

import time

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from console.views.run_view import RunView
from runners.plan.steps import StepKey
from runners.replay.pauses import paused_text
from runners.run.event_types import RunFinished, StepAborted, StepFailed, StepFinished, StepProgress, StepStarted
from runners.run.files import read_json
from runners.run.rundir import RunDir

NON_TTY_PROGRESS_EVERY_S = 5.0
BAR_ENDS = frozenset(cls.TYPE for cls in (StepFinished, StepFailed, StepAborted, RunFinished))  # the step bar closes


class HeadlessPrinter:
    """An event listener: a line per meaningful event, and progress (a live bar on a terminal)."""

    def __init__(self, console: Console, view: RunView) -> None:
        self.console = console
        self.view = view
        self.t0 = time.time()
        self._progress: Progress | None = None
        self._task = None
        self._last_line = 0.0

    def __call__(self, event: dict) -> None:
        """Handle one event (called by the runner's EventLog)."""
        line = self.view.apply(event)
        if line:
            stamp = f"[dim]{event['t'] - self.t0:7.1f}s[/dim]"
            self.console.print(f"{stamp} {line}", highlight=False, markup=True)
        kind = event.get("type")
        if kind == StepStarted.TYPE:
            self._start_bar(StepKey.from_dict(event["step"]), event.get("requests", 0))
        elif kind == StepProgress.TYPE:
            self._advance(event)
        elif kind in BAR_ENDS:
            self._stop_bar()

    def _start_bar(self, step: StepKey, total: int) -> None:
        self._stop_bar()
        if not self.console.is_terminal:
            return
        self._progress = Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[live]}"),
            TimeElapsedColumn(),
            console=self.console,
            transient=True,
        )
        self._task = self._progress.add_task(step.path, total=total, live="")
        self._progress.start()

    def _advance(self, event: dict) -> None:
        live = _live_text(event)
        done, total = event.get("completed", 0), event.get("total", 0)
        if self._progress is not None:
            self._progress.update(self._task, completed=done, total=total, live=live)
        elif time.time() - self._last_line >= NON_TTY_PROGRESS_EVERY_S or done == total:
            self._last_line = time.time()
            step = StepKey.from_dict(event["step"]).path
            self.console.print(f"          {step}: {done}/{total} requests  {live}", highlight=False)

    def _stop_bar(self) -> None:
        if self._progress is not None:
            self._progress.stop()
            self._progress = None


def _live_text(event: dict) -> str:
    def ms(key: str, digits: int = 1) -> str:
        value = event.get(key)
        return "n/a" if value is None else f"{value:.{digits}f}"

    failed = f"  failed {event['failed']}" if event.get("failed") else ""
    return (
        f"TTFT p50/p95 {ms('ttft_p50_ms')}/{ms('ttft_p95_ms')} ms  "
        f"TPOT p50/p95 {ms('tpot_p50_ms', 2)}/{ms('tpot_p95_ms', 2)} ms{failed}"
    )


def summary_table(run: RunDir) -> Table | None:
    """The per-arm table from summary.json, or None when there is no summary yet."""
    try:
        summary = read_json(run.summary_json)
    except (FileNotFoundError, ValueError):
        return None
    table = Table(title=f"{summary['run_id']}: {summary['status']}", title_justify="left")
    for col in ("arm", "arm env", "env", "ok", "failed", "wall s (sum)", "paused s", "TTFT p50", "TTFT p95",
                "TPOT p50", "TPOT p95", "tok/s", "verdict"):  # fmt: skip
        table.add_column(col, justify="left" if col in ("arm", "env", "verdict") else "right")
    for row in summary["arms"]:
        s = row["stats"]

        def f(key: str, digits: int = 1, s: dict = s) -> str:
            return "n/a" if s.get(key) is None else f"{s[key]:.{digits}f}"

        table.add_row(
            row["arm"], row["arm_env"], row["env_status"], str(s["ok"]), str(s["failed"]),
            f("wall_s", 2), paused_text(row.get("paused_s"), row.get("paused_excluded_s")), f("ttft_p50_ms"),
            f("ttft_p95_ms"), f("tpot_p50_ms", 2), f("tpot_p95_ms", 2),
            f("output_tok_s"), row.get("verdict") or "-",
        )  # fmt: skip
    return table
