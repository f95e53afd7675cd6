"""The Pareto frontier of throughput vs latency: one pure function shared by the plots and the results database."""

from __future__ import annotations

import math
from collections.abc import Sequence


def pareto_frontier(points: Sequence[tuple[float, float]]) -> list[bool]:
    """For (throughput, latency) points, whether each is on the Pareto frontier (higher throughput, lower latency).

    A point is dominated when another has throughput >= and latency <= with at least one strictly
    better; the frontier is the points nothing dominates. Equal points do not dominate each other,
    so duplicates of a frontier point are all on it. O(n log n): sweep throughput from high to low,
    keeping the lowest latency seen at strictly higher throughput.
    """
    flags = [False] * len(points)
    order = sorted(range(len(points)), key=lambda i: -points[i][0])
    best_higher = math.inf  # lowest latency among points with strictly higher throughput
    start = 0
    while start < len(order):
        end = start
        while end < len(order) and points[order[end]][0] == points[order[start]][0]:
            end += 1
        tier = order[start:end]
        tier_best = min(points[i][1] for i in tier)
        for i in tier:
            latency = points[i][1]
            flags[i] = latency < best_higher and latency <= tier_best
        best_higher = min(best_higher, tier_best)
        start = end
    return flags
