"""How the panels print a figure that may be missing."""

from __future__ import annotations


def number_text(value: float | None, digits: int = 1) -> str:
    """`value` with `digits` decimals, or "n/a" when there is none."""
    return "n/a" if value is None else f"{value:.{digits}f}"
