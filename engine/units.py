"""Units, and the one spelling of a figure that was not measured, for every layer (console, runners, engine).

Memory figures are binary: a GiB is 2**30 bytes, as /proc/meminfo, NVML and cgroups count. A figure that is
missing is printed as NOT_MEASURED ("N/A"), never as 0 and never left blank.
"""

from __future__ import annotations

GIB = 1 << 30  # bytes
NOT_MEASURED = "N/A"


def number_text(value: float | None, digits: int = 1, unit: str = "", signed: bool = False) -> str:
    """`value` with `digits` decimals and `unit` appended as given (`" ms"`, `"%"`), a sign when `signed`;
    NOT_MEASURED when there is no value."""
    if value is None:
        return NOT_MEASURED
    return f"{value:{'+' if signed else ''}.{digits}f}{unit}"


def percent_text(fraction: float | None) -> str:
    """A fraction as a percentage with three significant digits (0.0029 -> `0.29 %`, 0.5 -> `50 %`)."""
    return NOT_MEASURED if fraction is None else f"{fraction * 100:.3g} %"


def to_gib(value_bytes: float | None) -> float | None:
    """Bytes as GiB (None stays None)."""
    return None if value_bytes is None else value_bytes / GIB


def gib_text(value_gib: float) -> str:
    """A GiB figure for people: two decimals at most (`2.94`, `16`, `1.5`)."""
    return f"{round(value_gib, 2):g}"


def bytes_text(value_bytes: int) -> str:
    """A size for people in binary units, three significant digits (`216 KiB`, `642 MiB`, `1.5 GiB`)."""
    if value_bytes < 1024:
        return f"{value_bytes} B"
    size, unit = value_bytes / 1024, "KiB"
    for bigger in ("MiB", "GiB"):
        if size < 1000:
            break
        size, unit = size / 1024, bigger
    return f"{size:.3g} {unit}" if size < 1000 else f"{size:.0f} {unit}"
