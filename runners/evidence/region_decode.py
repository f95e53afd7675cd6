"""A step's region-timing dump decoded into a per-region table, its ticks calibrated into µs (pure functions, torch).

The buffer is what `engine.kernels.region_timing.decode_regions` reads: int64 [ctas, regions, 2] start/end
ticks, rows past `active_ctas` ignored, a zero delta meaning the CTA did not run the region. Per region
it gives the CTAs that ran it, the median and p99 of their durations in ticks, and a kind. Ticks become µs:

- `tick_ns` given: µs per tick = tick_ns / 1000. When the profiler's mean of the kernel is known too, it
  cross-checks: ratio = span median µs / profiler mean µs, flagged outside [1/2, 2] (a wrong tick rate,
  or the wrong kernel).
- only the profiler mean: µs per tick = profiler mean µs / span median ticks. A CTA's span is
  max(end) − min(start) over the regions it ran; the span median is the median over the CTAs that ran
  any. It takes a kernel's time to be one CTA's span (a single wave, no launch gap): an estimate.
- neither: the table stays in ticks, and `calibration.note` says why.

The profiler's mean of a kernel comes from the step's kernel table (`{"name", "n_calls", "mean_us"}` rows):
the rows named exactly `kernel`, else the one name that contains it, pooled by call count.

The section it makes is read back as text by `runners/evidence/region_table.py`, which needs no torch.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import torch

from engine.kernels.region_timing import decode_regions

CROSS_CHECK_FACTOR = 2.0  # span vs profiler mean further apart than this is flagged


@dataclass(frozen=True)
class Calibration:
    """How the table's ticks became µs (or why they did not)."""

    how: str | None  # "tick_ns" | "profiler mean of <kernel>" | None: in ticks
    scale: float | None  # µs per tick
    profiler_mean_us: float | None
    span_median: float | None  # ticks
    span_median_us: float | None
    ratio: float | None  # span median µs / profiler mean µs, when tick_ns and the profiler mean both exist
    flagged: bool  # the ratio lies outside [1/CROSS_CHECK_FACTOR, CROSS_CHECK_FACTOR]
    note: str | None  # why ticks, or what the cross-check found

    @property
    def unit(self) -> str:
        """`us` when calibrated, else `ticks`."""
        return "us" if self.scale is not None else "ticks"

    def as_dict(self) -> dict:
        """JSON form."""
        return asdict(self)


def _entry_mean(entry: object) -> tuple[str, float, int] | None:
    if not isinstance(entry, dict) or not isinstance(entry.get("name"), str):
        return None
    mean, calls = entry.get("mean_us"), entry.get("n_calls", 1)
    if isinstance(mean, bool) or not isinstance(mean, (int, float)) or not math.isfinite(mean) or mean <= 0:
        return None
    if isinstance(calls, bool) or not isinstance(calls, int) or calls < 1:
        return None
    return entry["name"], float(mean), calls


def profiler_mean(kernels: list[dict] | None, kernel: str | None) -> tuple[float | None, str | None]:
    """(mean µs of `kernel` in the step's kernel table, None) or (None, why not). Rules in the module doc."""
    if kernel is None:
        return None, "no kernel named in region_timings.kernel"
    rows = [row for row in map(_entry_mean, kernels or []) if row is not None]
    if not rows:
        return None, f"no profiler kernel table for the step to find {kernel!r} in"
    chosen = [row for row in rows if row[0] == kernel]
    if not chosen:
        names = sorted({name for name, _, _ in rows if kernel in name})
        if not names:
            return None, f"no kernel named {kernel!r} in the step's profile"
        if len(names) > 1:
            listed = ", ".join(names[:3]) + (" ..." if len(names) > 3 else "")
            return None, f"{len(names)} kernels in the step's profile contain {kernel!r} ({listed}); name one exactly"
        chosen = [row for row in rows if row[0] == names[0]]
    calls = sum(n for _, _, n in chosen)
    return math.fsum(mean * n for _, mean, n in chosen) / calls, None


def cta_spans(buffer: torch.Tensor, active_ctas: int | None = None) -> torch.Tensor:
    """Per CTA that ran any region: max(end) − min(start) over the regions it ran, in ticks (int64)."""
    ticks = buffer[: buffer.shape[0] if active_ctas is None else active_ctas].cpu()
    start, end = ticks[..., 0], ticks[..., 1]
    ran = (end - start) != 0
    first = torch.where(ran, start, torch.iinfo(torch.int64).max).min(dim=1).values
    last = torch.where(ran, end, torch.iinfo(torch.int64).min).max(dim=1).values
    return (last - first)[ran.any(dim=1)]


def span_median(buffer: torch.Tensor, active_ctas: int | None = None) -> float | None:
    """The median of `cta_spans` (ticks); None when no CTA ran a region."""
    spans = cta_spans(buffer, active_ctas)
    return float(torch.quantile(spans.double(), 0.5)) if spans.numel() else None


def calibrate(span: float | None, tick_ns: float | None, kernel: str | None, kernels: list[dict] | None) -> Calibration:
    """How ticks become µs, from the span median (ticks), `tick_ns` and the profiler's mean (module doc)."""
    mean, missing = profiler_mean(kernels, kernel)
    span_ok = span is not None and span > 0
    if tick_ns is not None:
        scale = tick_ns / 1000.0
        span_us = span * scale if span is not None else None
        if mean is None or not span_ok:
            note = f"not cross-checked: {missing}" if mean is None else "not cross-checked: no positive CTA span"
            return Calibration("tick_ns", scale, mean, span, span_us, None, False, note if kernel else None)
        ratio = span_us / mean  # type: ignore[operator]
        flagged = not 1 / CROSS_CHECK_FACTOR <= ratio <= CROSS_CHECK_FACTOR
        note = f"span median {span_us:.3g} µs is {ratio:.2f}x the profiler mean of {kernel} ({mean:.3g} µs)"
        if flagged:
            note += ": check tick_ns and the kernel name"
        return Calibration("tick_ns", scale, mean, span, span_us, ratio, flagged, note)
    if mean is not None and span_ok:
        scale = mean / span  # type: ignore[operator]
        note = "µs per tick = profiler mean / CTA span median (one wave assumed); give tick_ns to measure it"
        return Calibration(f"profiler mean of {kernel}", scale, mean, span, mean, None, False, note)
    why = missing if mean is None else "no positive CTA span to scale by"
    return Calibration(None, None, mean, span, None, None, False, f"in ticks, not µs: no tick_ns, and {why}")


def region_table(
    buffer: torch.Tensor,
    region_names: list[str] | None = None,
    active_ctas: int | None = None,
    tick_ns: float | None = None,
    kernel: str | None = None,
    kernels: list[dict] | None = None,
) -> dict:
    """The decoded part of phase.json `region_timings`: unit, calibration, regions, shape, active CTAs.

    Raises RegionTimingError for a buffer that is not int64 [ctas, regions, 2] or names that do not fit.
    """
    stats = decode_regions(buffer, region_names, active_ctas)
    active = buffer.shape[0] if active_ctas is None else active_ctas
    cal = calibrate(span_median(buffer, active), tick_ns, kernel, kernels)

    def us(ticks: float | None) -> float | None:
        return None if ticks is None or cal.scale is None else ticks * cal.scale

    regions = [
        {"region": s.region, "active_ctas": s.active_ctas, "median_us": us(s.median), "p99_us": us(s.p99),
         "median_ticks": s.median, "p99_ticks": s.p99, "kind": s.kind}
        for s in stats
    ]  # fmt: skip
    return {
        "unit": cal.unit,
        "calibration": cal.as_dict(),
        "regions": regions,
        "shape": list(buffer.shape),
        "active_ctas": active,
    }
