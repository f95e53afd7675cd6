"""What a pause did to a step's measurement, and what the gates may still read. Pure functions.

While dispatch is paused (the console's `p`) no request starts and requests in flight finish. So a
pause has two parts: while requests are still in flight the target drains (it works, at less than
the plan's load), then it idles until dispatch continues. Hence:
- `idle_s` = |pauses \\ busy|, busy = the union of request lifetimes [sent, ended]: time the target
  had nothing to do only because of the pause. It is left out of the step's wall time:
  wall = replay wall - idle_s.
- `in_flight_s` = |pauses ∩ busy|: the drain. It stays in the wall time (the work was done then), but
  at less than the plan's load, so the wall time of an unpaused step would lie in
  [wall - in_flight_s, wall]. The default-candidate gate judges the wall criterion at both ends of
  that range and withholds the verdict when they disagree (runners/gates/candidate.py).
- `requests` = requests in flight at some moment of a pause (`RequestRecord.during_pause`): their
  TTFT/TPOT/ITL/E2EL were measured while the load drained, so latency figures leave them out.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from runners.replay.records import RequestRecord

NS_PER_S = 1e9


def merge(spans: Iterable[tuple[float, float]]) -> list[tuple[float, float]]:
    """Sorted, non-overlapping spans covering the same points as `spans` (empty spans dropped)."""
    out: list[tuple[float, float]] = []
    for a, b in sorted((a, b) for a, b in spans if b > a):
        if out and a <= out[-1][1]:
            out[-1] = (out[-1][0], max(out[-1][1], b))
        else:
            out.append((a, b))
    return out


def overlap_s(xs: Sequence[tuple[float, float]], ys: Sequence[tuple[float, float]]) -> float:
    """|∪xs ∩ ∪ys| in the spans' unit."""
    total = 0.0
    for a, b in merge(xs):
        for c, d in merge(ys):
            total += max(0.0, min(b, d) - max(a, c))
    return total


def lifetime_s(rec: RequestRecord) -> tuple[float, float]:
    """A request's [sent, ended] in seconds from the phase start (ended: `ended_ns`, else sent + E2EL, else sent)."""
    if rec.ended_ns is not None:
        end = rec.ended_ns
    elif rec.e2e_ns is not None:
        end = rec.sent_ns + rec.e2e_ns
    else:
        end = rec.sent_ns
    return rec.sent_ns / NS_PER_S, end / NS_PER_S


@dataclass(frozen=True)
class PauseAccount:
    """A step's pauses (seconds from its replay's start) and how they split; see the module docstring."""

    intervals: tuple[tuple[float, float], ...] = ()
    paused_s: float = 0.0
    idle_s: float = 0.0
    in_flight_s: float = 0.0
    requests: int = 0

    def as_dict(self) -> dict:
        """JSON form (phase.json `pause`), rounded to the millisecond."""
        return {
            "intervals": [[round(a, 3), round(b, 3)] for a, b in self.intervals],
            "paused_s": round(self.paused_s, 3),
            "idle_s": round(self.idle_s, 3),
            "in_flight_s": round(self.in_flight_s, 3),
            "requests": self.requests,
        }


def account_pauses(intervals: Sequence[tuple[float, float]], records: Sequence[RequestRecord]) -> PauseAccount:
    """Split `intervals` into idle and in-flight time against the requests' lifetimes; count the requests
    marked `during_pause`."""
    pauses = merge(intervals)
    paused = math.fsum(b - a for a, b in pauses)
    in_flight = min(paused, overlap_s(pauses, [lifetime_s(r) for r in records]))
    return PauseAccount(
        intervals=tuple(pauses),
        paused_s=paused,
        idle_s=max(0.0, paused - in_flight),
        in_flight_s=in_flight,
        requests=sum(1 for r in records if r.during_pause),
    )


def paused_text(paused_s: float | None, excluded_s: float | None) -> str:
    """A table cell: `0` without a pause, else `21.0 (20.4 excluded from wall)`, the seconds paused and, of
    them, the seconds nothing was in flight, left out of the wall time."""
    if not paused_s:
        return "0"
    return f"{paused_s:.1f} ({excluded_s or 0.0:.1f} excluded from wall)"
