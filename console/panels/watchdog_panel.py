"""WatchdogPanel: the memory guard's level, unified-memory headroom, PSI, GPU and short histories.

It renders a `WatchdogView` (console/views/watchdog_view.py) and does no I/O: whoever tails
watchdog.jsonl / watchdog.json / events.jsonl folds the records into the view and calls
`update_view`. N/A is printed as N/A with its reason, never as 0; on a GB10 the GPU's memory is
printed "unified" (it is MemAvailable), never as a device figure.
"""

from __future__ import annotations

import time
from collections.abc import Iterable

from rich.text import Text
from textual.geometry import Size
from textual.widget import Widget

from console.views.watchdog_view import (
    SERIES,
    Series,
    WatchdogView,
    gpu_memory_kind,
    gpu_na_reason,
    gpu_process_gib,
    headroom_gib,
)
from engine.units import NOT_MEASURED, number_text, to_gib

SPARK_BARS = "▁▂▃▄▅▆▇█"
LEVEL_STYLES = {
    "ok": "bold black on green",
    "warn": "bold black on yellow",
    "abort": "bold white on dark_orange3",
    "kill": "bold white on red",
    "lost": "bold white on magenta",
    "unknown": "bold white on grey37",
}
FLOOR_STYLES = {"warn": "yellow", "abort": "dark_orange3", "kill": "red"}
FIXED_RANGES = {"gpu_util_pct": (0.0, 100.0)}  # other series scale to their own min..max
LABEL_WIDTH = 13
VALUE_WIDTH = 12
DEFAULT_WIDTH = 72  # before the first layout


def spark_text(points: Iterable[float | None], width: int, lo: float | None = None, hi: float | None = None) -> str:
    """`points` as one line of ▁…█, at most `width` cells; a gap (space) where a point is None.

    More points than cells: each cell is the mean of its bucket's reported points (None if it has none).
    The scale is `lo`..`hi`, or the reported points' own min..max; a flat series sits mid-height.
    """
    values = list(points)
    if width <= 0 or not values:
        return ""
    if len(values) > width:
        cells: list[float | None] = []
        for i in range(width):
            bucket = [v for v in values[i * len(values) // width : (i + 1) * len(values) // width] if v is not None]
            cells.append(sum(bucket) / len(bucket) if bucket else None)
    else:
        cells = values
    known = [v for v in cells if v is not None]
    if not known:
        return " " * len(cells)
    low = min(known) if lo is None else lo
    high = max(known) if hi is None else hi
    top = len(SPARK_BARS) - 1
    out = []
    for v in cells:
        if v is None:
            out.append(" ")
        elif high <= low:
            out.append(SPARK_BARS[top // 2])
        else:
            out.append(SPARK_BARS[round(min(max((v - low) / (high - low), 0.0), 1.0) * top)])
    return "".join(out)


def bar_scale_gib(view: WatchdogView) -> float | None:
    """The bar's right end in GiB: zoomed onto the floors (twice the WARN floor, or MemAvailable + 10 % when
    that is more), never past MemTotal; None while MemAvailable is unknown."""
    available = view.available_gib
    if available is None:
        return None
    scale = max(available * 1.1, view.floors.warn_gib * 2 if view.floors else 0.0)
    if view.total_gib:
        scale = min(scale, max(view.total_gib, available))
    return scale if scale > 0 else None


def memory_bar(view: WatchdogView, width: int) -> Text:
    """MemAvailable as a bar from 0 to `bar_scale_gib`, the floors marked ┃ in their colours, the scale at its end."""
    floors, available, scale = view.floors, view.available_gib, bar_scale_gib(view)
    if available is None or scale is None:
        return Text("")
    end = f" {scale:.0f} GiB"
    width -= len(end)
    if width <= 0:
        return Text("")
    filled = round(min(available / scale, 1.0) * width)
    marks = {}
    if floors is not None:
        for name, gib in (("kill", floors.kill_gib), ("abort", floors.abort_gib), ("warn", floors.warn_gib)):
            if gib <= scale:
                marks[min(width - 1, round(gib / scale * width))] = name
    fill_style = LEVEL_STYLES.get(view.level, LEVEL_STYLES["unknown"]).split(" on ")[-1]
    bar = Text()
    for i in range(width):
        if i in marks:
            bar.append("┃", style=f"bold {FLOOR_STYLES[marks[i]]}")
        elif i < filled:
            bar.append("█", style=fill_style)
        else:
            bar.append("░", style="grey37")
    bar.append(end, style="grey50")
    return bar


def gpu_line(view: WatchdogView) -> str:
    """The GPU and its memory, honestly: "unified" on GB10, "N/A: reason" without a GPU."""
    gpu = view.gpu
    kind = gpu_memory_kind(gpu)
    if kind == "n/a" or gpu is None:
        return f"{NOT_MEASURED}: {gpu_na_reason(gpu)}"
    processes = gpu_process_gib(gpu)
    per_process = f"processes {processes:.1f} GiB" if processes is not None else f"per-process memory {NOT_MEASURED}"
    if kind == "unified":
        memory = f"memory unified with the host (counted in MemAvailable); {per_process}"
    elif kind == "discrete":
        memory = f"memory {number_text(to_gib(gpu.device_mem_total))} GiB on the device; {per_process}"
    else:
        memory = f"memory: NVML cannot tell whether it is unified; {per_process}"
    return f"{gpu.name or 'GPU 0'} · {memory}"


def psi_line(view: WatchdogView) -> str:
    """Memory pressure (avg10, and avg60 where known), or N/A."""
    psi = view.psi
    if psi is None:
        return f"{NOT_MEASURED} (PSI disabled or not sampled yet)"
    line = f"some {number_text(psi.some_avg10, unit='%')}  full {number_text(psi.full_avg10, unit='%')} (avg10)"
    if psi.some_avg60 is not None or psi.full_avg60 is not None:
        line += f"  ·  avg60 some {number_text(psi.some_avg60, unit='%')} full {number_text(psi.full_avg60, unit='%')}"
    return line


def target_line(view: WatchdogView) -> str:
    """The serve target's memory cgroup, or why there is none."""
    target = view.target
    if target is None:
        return "no serve target cgroup in the sample"
    limit = "none" if target.limit_bytes is None else number_text(to_gib(target.limit_bytes), unit=" GiB")
    usage = number_text(to_gib(target.usage_bytes), unit=" GiB")
    oom = NOT_MEASURED if target.oom_kills is None else str(target.oom_kills)
    return f"cgroup v{target.version}: usage {usage}, limit {limit}, OOM kills {oom}"


def series_line(series: Series, width: int) -> Text:
    """`label  ▁▂▃…  last value unit`, or N/A for a series without data."""
    spec = series.spec
    line = Text(f"{spec.label:<{LABEL_WIDTH}}", style="bold")
    spark_width = max(0, width - LABEL_WIDTH - VALUE_WIDTH - 1)
    if not series.has_data():
        line.append(f"{NOT_MEASURED} (not reported)", style="grey50")
        return line
    lo, hi = FIXED_RANGES.get(spec.key, (None, None))
    line.append(f"{spark_text(series.points, spark_width, lo, hi):>{spark_width}}", style="cyan")  # newest at the right
    last = series.last()
    digits = 0 if spec.unit in ("MHz", "%", "°C") else 1
    line.append(f" {number_text(last, digits, ' ' + spec.unit):>{VALUE_WIDTH}}")
    return line


def panel_height(view: WatchdogView) -> int:
    """How many lines `render_view` draws for `view` with room for all: the memory bar only once MemAvailable is
    known."""
    return FIXED_LINES + len(SERIES) + (view.available_gib is not None)


def render_view(view: WatchdogView, width: int, height: int | None = None) -> Text:
    """The panel as Rich text, `width` cells wide; in `height` lines when it has fewer than it needs, the most
    telling kept (RANKS): the level and the headroom above each floor first, on one line when only one fits."""
    lines = _ranked_lines(view, width)
    if height is not None and height < len(lines):
        if height <= 1:
            badge = _badge(view)
            lines = [(0, Text.assemble(badge, " ", headroom_text(view, width - badge.cell_len - 1)))]
        else:
            kept = sorted(range(len(lines)), key=lambda i: lines[i][0])[:height]
            lines = [lines[i] for i in sorted(kept)]
    out = Text("\n").join(line for _rank, line in lines)
    out.no_wrap = True
    out.overflow = "ellipsis"
    return out


def headroom_text(view: WatchdogView, width: int) -> Text:
    """MemAvailable and the headroom above each floor (`WARN +3.0` GiB), as long as `width` allows: the floors
    spelled out, else their initials."""
    room = headroom_gib(view)
    for names, sep in ((("WARN", "ABORT", "KILL"), "  "), (("W", "A", "K"), " ")):
        line = Text(number_text(view.available_gib, unit=" GiB"))
        if view.floors is not None:
            for key, name in zip(("warn", "abort", "kill"), names, strict=True):
                line.append(sep)
                line.append(name, style=FLOOR_STYLES[key])
                line.append(f"{' ' if len(name) > 1 else ''}{number_text(room[key], signed=True)}")
        if line.cell_len <= width:
            break
    return line


def _badge(view: WatchdogView) -> Text:
    return Text(f" {view.level.upper()} ", style=LEVEL_STYLES.get(view.level, LEVEL_STYLES["unknown"]))


def _ranked_lines(view: WatchdogView, width: int) -> list[tuple[int, Text]]:
    """Every line of the full panel, in its order, each with its rank (0: the last to go when rows are short)."""
    level = Text.assemble(_badge(view), "  ", view.reason or "no guard record yet")
    lines: list[tuple[int, Text]] = [(RANKS["level"], level)]
    total = f" of {view.total_gib:.1f} GiB" if view.total_gib is not None else ""
    restart = {True: "restart allowed", False: "restart BLOCKED", None: f"restart {NOT_MEASURED}"}[view.restart_allowed]
    available = Text(
        f"MemAvailable {number_text(view.available_gib, unit=' GiB')}{total}  ·  "
        f"fill {number_text(view.fill_gib_s, 2, ' GiB/s', signed=True)}  ·  "
        f"KILL floor in {number_text(view.seconds_to_kill_floor, unit=' s')}  ·  {restart}"
    )
    lines.append((RANKS["available"], available))
    if view.floors is None:
        floors = Text(f"{'floors':<{LABEL_WIDTH}}", style="bold")
        floors.append(f"{NOT_MEASURED} (no watchdog.json status or guard_started event yet)", style="grey50")
    else:
        floors = Text(f"{'floors GiB':<{LABEL_WIDTH}}", style="bold")  # each: floor (headroom above it)
        room = headroom_gib(view)
        for name, gib in (
            ("warn", view.floors.warn_gib),
            ("abort", view.floors.abort_gib),
            ("kill", view.floors.kill_gib),
        ):
            floors.append("  " if name != "warn" else "")
            floors.append(f"{name.upper()} {gib:.1f}", style=FLOOR_STYLES[name])
            floors.append(f" ({number_text(room[name], signed=True)})")
    if floors.cell_len > width:  # too narrow for the floors and their headroom: MemAvailable and the headroom
        room = headroom_text(view, width - LABEL_WIDTH)
        label = Text(f"{'headroom':<{LABEL_WIDTH}}", style="bold")
        floors = Text.assemble(label, room) if LABEL_WIDTH + room.cell_len <= width else headroom_text(view, width)
    lines.append((RANKS["floors"], floors))
    if view.available_gib is not None:
        bar = Text.assemble(Text(" " * LABEL_WIDTH), memory_bar(view, max(10, width - LABEL_WIDTH)))
        lines.append((RANKS["bar"], bar))
    lines.append((RANKS["psi"], Text.assemble(Text(f"{'PSI memory':<{LABEL_WIDTH}}", style="bold"), psi_line(view))))
    lines.append((RANKS["target"], Text.assemble(Text(f"{'target':<{LABEL_WIDTH}}", style="bold"), target_line(view))))
    lines.append((RANKS["gpu"], Text.assemble(Text(f"{'GPU':<{LABEL_WIDTH}}", style="bold"), gpu_line(view))))
    for i, spec in enumerate(SERIES):
        lines.append((RANKS["series"] + i, series_line(view.series[spec.key], width)))

    footer = f"records {view.records}"
    if view.skipped:
        footer += f"  ·  skipped {view.skipped} (last: {view.last_skip})"
    if view.last_t is not None:
        footer += f"  ·  last record {time.strftime('%H:%M:%S', time.localtime(view.last_t))}"
    kill = view.last_kill
    if kill:
        footer += f"  ·  last kill {kill.get('arm')}/{kill.get('mode')}: {kill.get('outcome')}"
    lines.append((RANKS["footer"], Text(footer, style="grey50")))
    return lines


FIXED_LINES = 7  # level, MemAvailable, floors, PSI, target, GPU, footer
# Which lines a panel short of rows keeps, lowest first: the level, the headroom above the floors, MemAvailable,
# its bar, the last record (and last kill), PSI, GPU, the target's cgroup, then the series in SERIES order.
RANKS = {"level": 0, "floors": 1, "available": 2, "bar": 3, "footer": 4, "psi": 5, "gpu": 6, "target": 7, "series": 8}


class WatchdogPanel(Widget):
    """The memory watchdog: level badge, MemAvailable against the floors, PSI, GPU, sparklines."""

    DEFAULT_CSS = """
    WatchdogPanel { height: auto; padding: 0 1; text-wrap: nowrap; text-overflow: ellipsis; }
    """  # the main screen gives it what is left of its column (app.tcss): fewer rows, the most telling lines

    def __init__(self, view: WatchdogView | None = None, **kwargs) -> None:
        super().__init__(**kwargs)
        self._view = view or WatchdogView()
        self._lines = 0

    def on_mount(self) -> None:
        """Name the panel."""
        self.border_title = "memory watchdog"

    @property
    def view(self) -> WatchdogView:
        """The view rendered now."""
        return self._view

    def update_view(self, view: WatchdogView) -> None:
        """Render `view` (it may be the same object, folded further since the last call)."""
        self._view = view
        lines = panel_height(view)
        self.refresh(layout=lines != self._lines)  # a new layout only when the panel's height changes
        self._lines = lines

    def get_content_height(self, container: Size, viewport: Size, width: int) -> int:
        """With `height: auto`, room for every line."""
        return panel_height(self._view)

    def render(self) -> Text:
        """The panel's text for the current width, in the rows it has."""
        return render_view(self._view, self.content_size.width or DEFAULT_WIDTH, self.content_size.height or None)
