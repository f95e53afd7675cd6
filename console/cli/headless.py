"""`--headless`: the soak runs in this process and prints progress with rich, for scripts and CI.

Its output may go away while the soak runs (`| head -2`, an ssh session that ends): writes to a closed pipe or a
hung-up terminal are dropped and SIGHUP is handled, so the soak runs to its end and writes `run_finished`; what
happened is noted in the run's runner.log, and events.jsonl holds every event.
"""

from __future__ import annotations

import contextlib
import errno
import os
import signal
import sys
import time
from collections.abc import Callable, Iterable, Iterator
from typing import TextIO

from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table
from rich.text import Text

from console.views.run_view import RunView
from engine.units import number_text
from runners.plan.steps import StepKey
from runners.replay.pauses import paused_text
from runners.report.summary_model import DamagedSummary, read_summary
from runners.run.event_log import status_label
from runners.run.event_types import (
    LoggedEvent,
    RunFinished,
    StepAborted,
    StepFailed,
    StepFinished,
    StepProgress,
    StepStarted,
    parse_event,
)
from runners.run.rundir import RunDir, runner_alive

NON_TTY_PROGRESS_EVERY_S = 5.0
OUTPUT_GONE_ERRNOS = frozenset({errno.EPIPE, errno.EIO, errno.ECONNRESET})  # closed pipe, hung-up terminal
BAR_ENDS = (StepFinished, StepFailed, StepAborted, RunFinished)  # the step bar closes


class HeadlessPrinter:
    """An event listener: a line per meaningful event, and progress (a live bar on a terminal)."""

    def __init__(self, console: Console, view: RunView) -> None:
        self.console = console
        self.view = view
        self.t0 = time.time()
        self._progress: Progress | None = None
        self._task = None
        self._last_line = 0.0

    def __call__(self, line: dict) -> None:
        """Handle one event line as written (called by the runner's EventLog): read back once, like the console."""
        read = parse_event(line)
        said = self.view.apply(read)
        if said:
            stamp = f"[dim]{(read.t or self.t0) - self.t0:7.1f}s[/dim]"
            self.console.print(f"{stamp} {escape(said)}", highlight=False, markup=True)  # said: plain text
        if not isinstance(read, LoggedEvent):
            return
        event = read.event
        if isinstance(event, StepStarted):
            self._start_bar(event.step, event.requests)
        elif isinstance(event, StepProgress):
            self._advance(event)
        elif isinstance(event, BAR_ENDS):
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

    def _advance(self, event: StepProgress) -> None:
        live = _live_text(event)
        done, total = event.completed, event.total
        if self._progress is not None:
            self._progress.update(self._task, completed=done, total=total, live=live)
        elif time.time() - self._last_line >= NON_TTY_PROGRESS_EVERY_S or done == total:
            self._last_line = time.time()
            self.console.print(f"          {event.step.path}: {done}/{total} requests  {live}", highlight=False)

    def _stop_bar(self) -> None:
        if self._progress is not None:
            self._progress.stop()
            self._progress = None


def _live_text(event: StepProgress) -> str:
    failed = f"  failed {event.failed}" if event.failed else ""
    return (
        f"TTFT p50/p95 {number_text(event.ttft_p50_ms)}/{number_text(event.ttft_p95_ms)} ms  "
        f"TPOT p50/p95 {number_text(event.tpot_p50_ms, 2)}/{number_text(event.tpot_p95_ms, 2)} ms{failed}"
    )


def summary_table(run: RunDir) -> Table | Text | None:
    """The per-arm table from summary.json; a line saying what is wrong with a damaged one; None when there is no
    summary yet."""
    summary = read_summary(run.summary_json)
    if summary is None:
        return None
    if isinstance(summary, DamagedSummary):
        return Text(summary.reason)
    table = Table(title=f"{summary.run_id}: {summary.status}", title_justify="left")
    for col in ("arm", "arm env", "env", "ok", "failed", "wall s (sum)", "paused s", "TTFT p50", "TTFT p95",
                "TPOT p50", "TPOT p95", "tok/s", "verdict"):  # fmt: skip
        table.add_column(col, justify="left" if col in ("arm", "env", "verdict") else "right")
    for row in summary.arms:
        s = row.stats
        table.add_row(
            row.arm, row.arm_env, row.env_status, str(s.ok), str(s.failed),
            number_text(s.wall_s, 2), paused_text(row.paused_s, row.paused_excluded_s),
            number_text(s.ttft_p50_ms), number_text(s.ttft_p95_ms), number_text(s.tpot_p50_ms, 2),
            number_text(s.tpot_p95_ms, 2), number_text(s.output_tok_s), row.verdict or "-",
        )  # fmt: skip
    return table


def status_lines(run: RunDir) -> list[str]:
    """The run's status in plain text (no escape codes): id, state and steps, whether a runner works on it, the
    summary; what `attach` prints when its stdout is not a terminal."""
    try:
        run_id = run.info().get("run_id", "?")
    except (OSError, ValueError, AttributeError) as exc:
        run_id = f"? (run.json unreadable: {exc})"
    lines = [f"run {run_id} in {run.root}"]
    state = run.read_state()  # never raises: garbage reads as a `damaged` state that says what to do
    if state is None:
        lines.append("state: created (no state.json yet)")
    else:
        reason = f": {state.reason}" if state.reason else ""
        lines.append(f"state: {status_label(run, state)}{reason}")
        lines.append(f"steps: {state.steps_done}/{state.steps_total} done, {state.steps_failed} failed")
        if state.current:
            current = state.current
            lines.append(f"in flight: {current.get('arm')}/{current.get('mode')}/{current.get('phase')}/"
                         f"{current.get('rep')}")  # fmt: skip
    pid = f" (pid {state.runner_pid})" if state is not None and state.runner_pid else ""
    if runner_alive(run):
        lines.append(f"runner: alive{pid}")
    elif state is not None and state.status == "running":
        lines.append(f"runner: gone{pid} without ending the run; `gb10-console run --resume {run.root}` continues")
    else:
        lines.append("runner: not running")
    if run.summary_md.exists():
        lines.append(f"summary: {run.summary_md}")
    return lines


class DroppableOutput:
    """stdout or stderr for a soak that must outlive its reader: once a write or flush fails because the reader
    went away (closed pipe, hung-up terminal), it and everything after it are dropped, never raised.

    The stream's descriptor is then pointed at /dev/null, so text still buffered below (flushed at exit) goes
    nowhere instead of failing again. Everything else (isatty, fileno, encoding) is the stream's own.
    """

    def __init__(self, stream: TextIO, name: str, on_gone: Callable[[str], None]) -> None:
        self._stream = stream
        self._name = name
        self._on_gone = on_gone
        self.gone = False

    def write(self, text: str) -> int:
        """Write `text`, or drop it once the reader is gone."""
        if not self.gone:
            try:
                return self._stream.write(text)
            except OSError as exc:
                self._lose(exc)
        return len(text)

    def writelines(self, lines: Iterable[str]) -> None:
        """Write each line, or drop them once the reader is gone."""
        for line in lines:
            self.write(line)

    def flush(self) -> None:
        """Flush, or nothing once the reader is gone."""
        if not self.gone:
            try:
                self._stream.flush()
            except OSError as exc:
                self._lose(exc)

    def _lose(self, exc: OSError) -> None:
        if exc.errno not in OUTPUT_GONE_ERRNOS:
            raise exc
        self.gone = True
        with contextlib.suppress(OSError, ValueError):
            null = os.open(os.devnull, os.O_WRONLY)
            os.dup2(null, self._stream.fileno())
            os.close(null)
        self._on_gone(f"{self._name} is gone ({type(exc).__name__}: {exc.strerror or exc})")

    def __getattr__(self, name: str):
        return getattr(self._stream, name)


class OutputLossTolerance:
    """While in effect (a context manager), the headless soak survives losing its output: sys.stdout and
    sys.stderr are DroppableOutput, and SIGHUP is handled (not ignored: the serve target and the guard, started
    meanwhile, keep the default). Each loss is one line in `log` (the run's runner.log)."""

    def __init__(self, log: os.PathLike) -> None:
        self.log = log
        self.lost: list[str] = []

    def note(self, what: str) -> None:
        """Append `what` to the log with the time and this pid (never raises: a full disk loses the note only)."""
        stamp = time.strftime("%Y-%m-%d %H:%M:%S")
        with contextlib.suppress(OSError), open(self.log, "a") as fh:
            fh.write(f"{stamp} gb10-console --headless (pid {os.getpid()}): {what}\n")

    def _gone(self, what: str) -> None:
        self.lost.append(what)
        self.note(f"{what}; the soak goes on, output is dropped; every event is in events.jsonl")

    def _hangup(self, signum: int, frame: object) -> None:
        self._gone("SIGHUP: the terminal hung up")

    @contextlib.contextmanager
    def applied(self) -> Iterator[OutputLossTolerance]:
        """Install the droppable streams and the SIGHUP handler; restore both on the way out."""
        saved = sys.stdout, sys.stderr, signal.getsignal(signal.SIGHUP)
        sys.stdout = DroppableOutput(sys.stdout, "stdout", self._gone)  # type: ignore[assignment]
        sys.stderr = DroppableOutput(sys.stderr, "stderr", self._gone)  # type: ignore[assignment]
        signal.signal(signal.SIGHUP, self._hangup)
        try:
            yield self
        finally:
            signal.signal(signal.SIGHUP, saved[2])
            sys.stdout, sys.stderr = saved[0], saved[1]
