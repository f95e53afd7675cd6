"""A step's `region_timings` section (phase.json, summary.json) as table rows and a calibration line.

Plain dicts in, text out: no torch, so the console and the report read sections without loading it.
The section is made by `runners/evidence/region_decode.py` from a dump; its `status` is one of the four below.
"""

from __future__ import annotations

import math

from engine.units import NOT_MEASURED

CAPTURED, MISSING, UNREADABLE, UNAVAILABLE = "captured", "missing", "unreadable", "unavailable"


def section_status(section: dict) -> str:
    """The section's status ("captured", "missing", "unreadable", "unavailable"), "?" when damaged."""
    status = section.get("status")
    return status if isinstance(status, str) else "?"


def _cell(value: object, digits: int) -> str:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        return NOT_MEASURED
    return f"{value:.{digits}f}"


def region_rows(section: dict) -> list[tuple[str, str, str, str, str]]:
    """(region, active CTAs, median, p99, kind) as text, in the section's unit (µs, else ticks)."""
    in_us = section.get("unit") == "us"
    rows = []
    for entry in section.get("regions") or []:
        if not isinstance(entry, dict):
            continue
        median = entry.get("median_us") if in_us else entry.get("median_ticks")
        p99 = entry.get("p99_us") if in_us else entry.get("p99_ticks")
        digits = 2 if in_us else 0
        rows.append((str(entry.get("region", "?")), str(entry.get("active_ctas", "?")), _cell(median, digits),
                     _cell(p99, digits), str(entry.get("kind", "?"))))  # fmt: skip
    return rows


def calibration_line(section: dict) -> str:
    """One line: how the section's numbers were calibrated (or why it holds none)."""
    status = section_status(section)
    if status != CAPTURED:
        return f"{status}: {section.get('reason') or 'no reason recorded'}"
    cal = section.get("calibration") if isinstance(section.get("calibration"), dict) else {}
    how, scale, note = cal.get("how"), cal.get("scale"), cal.get("note")
    if how == "tick_ns":
        per_tick = scale * 1000 if isinstance(scale, (int, float)) else None
        text = f"µs from tick_ns ({_cell(per_tick, 3)} ns per tick)"
    elif how:
        mean, span = _cell(cal.get("profiler_mean_us"), 2), _cell(cal.get("span_median"), 0)
        text = f"µs from the {how} ({mean} µs over a CTA span median of {span} ticks)"
    else:
        return note or "in ticks, not µs"
    if note:
        text += f"; {'CHECK: ' if cal.get('flagged') else ''}{note}"
    return text
