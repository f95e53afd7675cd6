"""The timeline screen (`t`): the whole run on one time axis — MemAvailable, every step's span, the verdicts.

Attaching to a finished run shows its complete history from the run directory; during a run the
axis ends now. Rendering is pure text from the folded views; the screen does no I/O.
"""

from __future__ import annotations

import time

from rich.text import Text
from textual.app import ComposeResult
from textual.screen import Screen
from textual.widget import Widget

from console.keys import TIMELINE, bindings
from console.panels.key_footer import KeyFooter
from console.panels.watchdog_panel import SPARK_BARS
from console.views.run_view import RunView
from console.views.timeline import MemoryTimeline, incident_marks, memory_cells, step_bar, time_span
from runners.watchdog.policy import Floors

LABEL_WIDTH = 30
LEVEL_STYLE = {"ok": "green", "warn": "yellow", "abort": "red", "kill": "bold magenta"}
STEP_MARK = {"done": ("█", "green"), "skipped": ("█", "green"), "failed": ("▒", "red"), "aborted": ("░", "yellow"),
             "running": ("▶", "cyan")}  # fmt: skip


def _clock(t: float) -> str:
    return time.strftime("%H:%M:%S", time.localtime(t))


def render_timeline(
    view: RunView, memory: MemoryTimeline, floors: Floors | None, verdicts: dict, width: int, now: float
) -> Text:
    """The timeline as text for a screen `width` cells wide."""
    span = time_span(view, memory, now)
    if span is None:
        return Text("Nothing to show yet: no step has started and the guard has recorded no sample.")
    t0, t1 = span
    cells = max(10, width - LABEL_WIDTH - 1)
    out = Text()
    out.append(f"{view.run_id}  {_clock(t0)} → {_clock(t1)}  ({(t1 - t0) / 60:.1f} min)\n", style="bold")
    out.append(_memory_row(memory, floors, t0, t1, cells))
    for step in sorted(view.steps.values(), key=lambda s: (s.started_t is None, s.started_t or 0.0)):
        mark, style = STEP_MARK.get(step.status, ("·", "grey50"))
        label = f"{step.icon} {step.key.path}"[: LABEL_WIDTH - 1].ljust(LABEL_WIDTH)
        out.append(label)
        out.append(step_bar(step.started_t, step.ended_t, t0, t1, cells, mark) + "\n", style=style)
    if view.incidents:
        out.append("incidents".ljust(LABEL_WIDTH))
        out.append(incident_marks([t for t, _ in view.incidents], t0, t1, cells) + "\n", style="bold red")
    out.append(" " * LABEL_WIDTH + _clock(t0) + " " * max(1, cells - 16) + _clock(t1) + "\n", style="grey50")
    for t, what in view.incidents:
        out.append(f"  ! {_clock(t)}  {what}\n", style="red")
    said = "   ".join(f"{arm}: {verdict}" for arm, verdict in verdicts.items())
    out.append("verdicts".ljust(LABEL_WIDTH) + (said or "none yet (summary.json appears when a session ends)"))
    return out


def _memory_row(memory: MemoryTimeline, floors: Floors | None, t0: float, t1: float, cells: int) -> Text:
    row = Text("MemAvailable (min)".ljust(LABEL_WIDTH))
    points = memory_cells(memory, t0, t1, cells)
    known = [p.available_gib for p in points if p is not None]
    low = min([*known, floors.kill_gib] if floors else known, default=0.0)
    high = max(known, default=1.0)
    top = len(SPARK_BARS) - 1
    for p in points:
        if p is None:
            row.append(" ")
            continue
        level = round((p.available_gib - low) / (high - low) * top) if high > low else top // 2
        row.append(SPARK_BARS[max(0, min(top, level))], style=LEVEL_STYLE.get(p.level, ""))
    lowest = f"  lowest {min(known):.1f} GiB" if known else "  no guard samples"
    row.append(lowest + (f", KILL floor {floors.kill_gib:g} GiB" if floors else "") + "\n", style="grey50")
    return row


class Timeline(Widget):
    """Renders `render_timeline` at the widget's width."""

    DEFAULT_CSS = "Timeline { height: auto; padding: 0 1; }"

    def __init__(self, view: RunView, memory: MemoryTimeline, floors: Floors | None, verdicts: dict) -> None:
        super().__init__()
        self.view, self.memory, self.floors, self.verdicts = view, memory, floors, verdicts

    def render(self) -> Text:
        """The timeline for the current width."""
        return render_timeline(self.view, self.memory, self.floors, self.verdicts, self.content_size.width or 100,
                               time.time())  # fmt: skip


class TimelineScreen(Screen[None]):
    """The run's whole timeline; `t` or escape goes back."""

    BINDINGS = bindings(TIMELINE)  # console/keys.py

    def __init__(self, view: RunView, memory: MemoryTimeline, floors: Floors | None, verdicts: dict) -> None:
        super().__init__()
        self._parts = (view, memory, floors, verdicts)

    def compose(self) -> ComposeResult:
        yield Timeline(*self._parts)
        yield KeyFooter()
