"""Region timing: per-CTA start/end tick buffers written by a kernel, decoded into per-region statistics.

A kernel built with region timers writes an int64 buffer of shape [ctas, regions, 2]: for CTA c and
region r, `[c, r, 0]` is the start tick and `[c, r, 1]` the end tick (globaltimer nanoseconds or
clock64 cycles; the unit is the caller's). Rows are CTAs in launch order with a fixed per-CTA stride;
the buffer may hold more rows than the grid launched, so only the first `active_ctas` rows (the grid
size) are read. A CTA that did not run a region leaves a zero delta there, and zero deltas are
dropped. Per region: median and p99 of the durations, the number of CTAs that ran it, and a class:
- `single elected CTA`: exactly one CTA ran it (e.g. the last-arriving CTA's gather);
- `barrier wait`: several CTAs ran it and they all left it together (the spread of end ticks is at
  most `aligned_fraction` of the median duration) while they entered it apart: waiting on others;
- `parallel work`: everything else.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

SINGLE = "single elected CTA"
BARRIER = "barrier wait"
PARALLEL = "parallel work"


class RegionTimingError(ValueError):
    """A buffer that is not [ctas, regions, 2] int64, or a grid larger than the buffer."""


@dataclass(frozen=True)
class RegionStats:
    """One region's decoded timing."""

    region: str
    active_ctas: int
    median: float | None
    p99: float | None
    kind: str  # SINGLE | BARRIER | PARALLEL, or "not run"


def _quantile(values: torch.Tensor, q: float) -> float:
    return float(torch.quantile(values.double(), q))


def decode_regions(
    buffer: torch.Tensor,
    region_names: list[str] | None = None,
    active_ctas: int | None = None,
    aligned_fraction: float = 0.05,
) -> list[RegionStats]:
    """Per-region statistics of a [ctas, regions, 2] tick buffer (rules in the module docstring)."""
    if buffer.dim() != 3 or buffer.shape[2] != 2:
        raise RegionTimingError(f"region timing buffers are [ctas, regions, 2], got {tuple(buffer.shape)}")
    if buffer.dtype != torch.int64:
        raise RegionTimingError(f"region timing buffers hold int64 ticks, got {buffer.dtype}")
    ctas, regions = buffer.shape[0], buffer.shape[1]
    active_ctas = ctas if active_ctas is None else active_ctas
    if not 0 <= active_ctas <= ctas:
        raise RegionTimingError(f"the grid has {active_ctas} CTAs but the buffer holds {ctas}")
    names = region_names or [f"region{r}" for r in range(regions)]
    if len(names) != regions:
        raise RegionTimingError(f"{len(names)} region names for {regions} regions")
    ticks = buffer[:active_ctas].cpu()
    out = []
    for r, name in enumerate(names):
        start, end = ticks[:, r, 0], ticks[:, r, 1]
        ran = (end - start) != 0
        durations = (end - start)[ran]
        n = int(ran.sum())
        if n == 0:
            out.append(RegionStats(name, 0, None, None, "not run"))
            continue
        median = _quantile(durations, 0.5)
        if n == 1:
            kind = SINGLE
        else:
            end_spread = float(end[ran].max() - end[ran].min())
            start_spread = float(start[ran].max() - start[ran].min())
            aligned = end_spread <= aligned_fraction * abs(median)
            kind = BARRIER if aligned and start_spread > end_spread else PARALLEL
        out.append(RegionStats(name, n, median, _quantile(durations, 0.99), kind))
    return out
