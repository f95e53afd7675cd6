"""Pressure stall information (PSI): the `some`/`full` lines of /proc/pressure/* and cgroup *.pressure files.

A line looks like `some avg10=0.00 avg60=0.02 avg300=0.13 total=1128053`: the avg* figures are the
percentage of wall time in which some (or all) tasks stalled on the resource over the last 10, 60 and
300 s; `total` is the cumulative stall time in microseconds. Values that cannot be read are None.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

_AVERAGES = ("avg10", "avg60", "avg300")


@dataclass(frozen=True)
class Pressure:
    """One PSI file: averages in percent, totals in microseconds; None where the file did not say."""

    some_avg10: float | None = None
    some_avg60: float | None = None
    some_avg300: float | None = None
    some_total: int | None = None
    full_avg10: float | None = None
    full_avg60: float | None = None
    full_avg300: float | None = None
    full_total: int | None = None


def parse_count(text: str) -> int | None:
    """A non-negative decimal integer (ASCII digits only), or None."""
    text = text.strip()
    return int(text) if text.isascii() and text.isdigit() else None


def _percent(text: str) -> float | None:
    try:
        value = float(text)
    except ValueError:
        return None
    return value if math.isfinite(value) and value >= 0 else None


def parse_psi(text: str) -> Pressure:
    """The `some` and `full` lines of a PSI file; a missing line (cpu, older kernels) or garbage gives None fields."""
    values: dict[str, float | int] = {}
    for line in text.splitlines():
        kind, _, rest = line.strip().partition(" ")
        if kind not in ("some", "full"):
            continue
        for token in rest.split():
            key, sep, raw = token.partition("=")
            name = f"{kind}_{key}"
            if not sep or name in values:
                continue
            value = _percent(raw) if key in _AVERAGES else parse_count(raw) if key == "total" else None
            if value is not None:
                values[name] = value
    return Pressure(**values)


def read_psi(path: Path) -> Pressure | None:
    """The PSI file at `path`, or None when it is absent or unreadable (PSI disabled: missing, or EOPNOTSUPP)."""
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return None
    return parse_psi(text)
