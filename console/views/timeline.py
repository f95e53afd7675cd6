"""A run's whole timeline for the console: MemAvailable over time (kept at bounded resolution) and step spans.

`MemoryTimeline` keeps at most `capacity` points for any run length: when full, neighbouring points
merge pairwise, keeping the lower MemAvailable (the one a reviewer worries about) and the worse level.
Pure functions turn it and a RunView into fixed-width rows for a text timeline.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from console.views.run_view import RunView

LEVEL_RANK = {"ok": 0, "warn": 1, "abort": 2, "kill": 3}


@dataclass(frozen=True)
class MemoryPoint:
    """MemAvailable at time `t` (the lowest seen in the span it stands for) and the worst level there."""

    t: float
    available_gib: float
    level: str


@dataclass
class MemoryTimeline:
    """Bounded MemAvailable history over a whole run."""

    capacity: int = 2048
    points: list[MemoryPoint] = field(default_factory=list)

    def add(self, t: float, available_gib: float, level: str) -> None:
        """Append a sample (in time order); halves the resolution when full."""
        if self.points and t < self.points[-1].t:
            return  # an older record (e.g. watchdog.json read again) adds nothing
        self.points.append(MemoryPoint(t, available_gib, level))
        if len(self.points) > self.capacity:
            self.points = [_merge(a, b) for a, b in zip(self.points[0::2], self.points[1::2], strict=False)]

    def add_record(self, record: dict) -> None:
        """Take a guard record (watchdog.jsonl line) if it carries a time, MemAvailable and a level."""
        t, available, level = record.get("t"), record.get("available_gib"), record.get("level")
        if isinstance(t, (int, float)) and isinstance(available, (int, float)) and isinstance(level, str):
            self.add(float(t), float(available), level)


def _merge(a: MemoryPoint, b: MemoryPoint) -> MemoryPoint:
    worse = a.level if LEVEL_RANK.get(a.level, 0) >= LEVEL_RANK.get(b.level, 0) else b.level
    return MemoryPoint(a.t, min(a.available_gib, b.available_gib), worse)


def time_span(view: RunView, memory: MemoryTimeline, now: float) -> tuple[float, float] | None:
    """From the first step or memory point to the last (or `now` while the run goes on); None with neither."""
    starts = [s.started_t for s in view.steps.values() if s.started_t is not None]
    ends = [s.ended_t or now for s in view.steps.values() if s.started_t is not None]
    if memory.points:
        starts.append(memory.points[0].t)
        ends.append(memory.points[-1].t)
    if not starts:
        return None
    t0, t1 = min(starts), max(ends)
    return t0, max(t1, t0 + 1.0)


def memory_cells(memory: MemoryTimeline, t0: float, t1: float, width: int) -> list[MemoryPoint | None]:
    """One cell per time bucket: the bucket's lowest MemAvailable and worst level (None where no sample)."""
    cells: list[MemoryPoint | None] = [None] * width
    for p in memory.points:
        i = min(width - 1, max(0, int((p.t - t0) / (t1 - t0) * width)))
        cells[i] = p if cells[i] is None else _merge(cells[i], p)
    return cells


def step_bar(started: float | None, ended: float | None, t0: float, t1: float, width: int, mark: str) -> str:
    """A step's span as `mark` characters on a `width`-cell time axis (spaces elsewhere)."""
    if started is None:
        return " " * width
    a = min(width - 1, max(0, int((started - t0) / (t1 - t0) * width)))
    b = min(width, max(a + 1, int(((ended or t1) - t0) / (t1 - t0) * width + 0.999)))
    return " " * a + mark * (b - a) + " " * (width - b)


def incident_marks(times: list[float], t0: float, t1: float, width: int) -> str:
    """A `!` in the cell of each incident time on a `width`-cell axis (times outside it land on its ends)."""
    cells = [" "] * width
    for t in times:
        cells[min(width - 1, max(0, int((t - t0) / (t1 - t0) * width)))] = "!"
    return "".join(cells)
