"""The console benchmark's targets and its metric definitions (pure functions, each formula in its docstring)."""

from __future__ import annotations

TARGET_KEY_P95_MS = 50.0  # key press -> frame, p95, with 2,000 events/s arriving
TARGET_RSS_MB = 150.0  # after the 8-hour history is folded
TARGET_IDLE_CPU_PCT = 3.0  # attached to a soak at 1 Hz, % of one core
TARGET_ATTACH_S = 1.0  # `attach` in a fresh process -> its first frame
# The backlog "grows" when its least-squares slope exceeds this fraction of the write rate: the console
# then folds less than (1 - fraction) of what arrives. Between polls it swings by up to rate x 0.2 s.
BACKLOG_GROWTH_FRACTION = 0.05
MB = 1_000_000


def least_squares_slope(points: list[tuple[float, float]]) -> float | None:
    """The slope of the least-squares line through (x, y) points.

    slope = sum((x - mean_x) * (y - mean_y)) / sum((x - mean_x) ** 2); None for fewer than two
    points or when every x is the same.
    """
    if len(points) < 2:
        return None
    mean_x = sum(x for x, _ in points) / len(points)
    mean_y = sum(y for _, y in points) / len(points)
    sxx = sum((x - mean_x) ** 2 for x, _ in points)
    if sxx == 0:
        return None
    return sum((x - mean_x) * (y - mean_y) for x, y in points) / sxx


def cpu_percent(cpu_s: float, wall_s: float) -> float:
    """CPU time as % of one core over a wall-clock window: 100 * cpu_s / wall_s (0 for an empty window)."""
    return 100.0 * cpu_s / wall_s if wall_s > 0 else 0.0


def backlog_grew(slope_per_s: float | None, rate_hz: float) -> bool:
    """True when the backlog's slope (events/s) exceeds BACKLOG_GROWTH_FRACTION of the write rate."""
    return slope_per_s is not None and slope_per_s > BACKLOG_GROWTH_FRACTION * rate_hz
