"""The console's title bar: what fits in the terminal's width without losing the memory level or PAUSED.

Fields are dropped or shortened in a fixed order (host to its first label, narrower separators, then
no host, no plan, no ETA) until the line fits; what still does not fit is broken between fields, never
inside one, with the state, the memory level and PAUSED right after the run id, so a title cut at its
height limit loses the clock or the runner first.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, replace

from rich.text import Text

WIDE, NARROW = "  ·  ", " · "


@dataclass(frozen=True)
class TitleFields:
    """Everything the title can show; None or "" leaves a field out."""

    run_id: str
    host: str
    plan: str
    state: str
    elapsed_s: float | None
    eta_s: float | None
    runner: str
    memory: str
    paused: bool


def _clock(seconds: float) -> str:
    return time.strftime("%H:%M:%S", time.gmtime(seconds))


def _variants(fields: TitleFields) -> list[tuple[TitleFields, str]]:
    """The title from fullest to most compact: each step drops or shortens one more thing."""
    short_host = replace(fields, host=fields.host.split(".")[0])
    no_host = replace(short_host, host="")
    no_plan = replace(no_host, plan="")
    no_eta = replace(no_plan, eta_s=None)
    return [(fields, WIDE), (short_host, WIDE), (short_host, NARROW), (no_host, NARROW), (no_plan, NARROW),
            (no_eta, NARROW)]  # fmt: skip


def title_text(fields: TitleFields, width: int) -> Text:
    """The fullest title that fits in `width` cells; else the most compact one, broken between fields."""
    for variant, sep in _variants(fields):
        parts = _parts(variant)
        line = Text(sep).join(parts)
        if line.cell_len <= width:
            line.no_wrap = True
            return line
    head, rest = parts[0], parts[1:]
    vital = [p for p in rest if p.plain.startswith("memory ") or p.plain == " PAUSED "]
    parts = [head, rest[0], *vital, *(p for p in rest[1:] if p not in vital)]  # state, memory, PAUSED first
    lines: list[Text] = []
    for part in parts:
        if lines and lines[-1].cell_len + len(sep) + part.cell_len <= width:
            lines[-1] = Text(sep).join([lines[-1], part])
        else:
            lines.append(part)
    out = Text("\n").join(lines)
    out.no_wrap, out.overflow = True, "ellipsis"
    return out


def _parts(fields: TitleFields) -> list[Text]:
    """The title's fields in order: bold run id (and host), plan, state, clock, runner, memory, PAUSED."""
    clock = "--:--:--" if fields.elapsed_s is None else _clock(fields.elapsed_s)
    if fields.eta_s is not None:
        clock += f" (ETA {_clock(fields.eta_s)})"
    head = Text(fields.run_id, style="bold")
    if fields.host:
        head.append(f" on {fields.host}")
    parts = [head] + [
        Text(part)
        for part in (f"plan {fields.plan}" if fields.plan else "", fields.state, clock, fields.runner,
                     f"memory {fields.memory.upper()}")
        if part
    ]  # fmt: skip
    if fields.paused:
        parts.append(Text(" PAUSED ", style="bold reverse"))
    return parts
