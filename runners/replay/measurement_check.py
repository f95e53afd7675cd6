"""Does the client measure what the server measured? A pure cross-check of one step's means.

Compared, when both sides have them:
- TTFT: the client's mean (`stats.distributions["ttft_ms"].mean`) vs the server's
  `time_to_first_token` mean; they disagree when |Δ| > max(`ttft_abs_ms`, `ttft_rel_pct` % of the
  server's mean) (25 ms, 50 %): the client's TTFT adds the network and the HTTP stack, a few ms.
- ITL: the client's mean gap between chunks (`itl_ms`) vs the server's `inter_token_latency` mean;
  they disagree when |Δ| > `itl_rel_pct` % of the server's mean (50 %). Both count one sample per
  output chunk, so a server that batches tokens per chunk moves both alike.

Result: `agree`, `client-side distortion` (a comparison failed: both numbers and the bound are
kept) or `unchecked` (why: the server's histograms are missing or do not cover the step, the
request counts differ, no request finished, or nothing could be compared). A server that finished
more requests than the client saw was shared with other traffic: its means are not the client's.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Literal

from runners.plan.sections import GatesSpec
from runners.replay.server_latency import ServerLatency

MeasurementStatus = Literal["agree", "client-side distortion", "unchecked"]
AGREE: MeasurementStatus = "agree"
DISTORTED: MeasurementStatus = "client-side distortion"
UNCHECKED: MeasurementStatus = "unchecked"
STATUSES: tuple[MeasurementStatus, ...] = (AGREE, DISTORTED, UNCHECKED)


@dataclass(frozen=True)
class MeasurementBounds:
    """How far the client's means may stray from the server's (the plan's `[gates]` measurement fields)."""

    ttft_abs_ms: float = 25.0
    ttft_rel_pct: float = 50.0
    itl_rel_pct: float = 50.0

    @classmethod
    def from_gates(cls, gates: GatesSpec) -> MeasurementBounds:
        """The bounds a plan's `[gates]` table sets."""
        return cls(gates.measurement_ttft_abs_ms, gates.measurement_ttft_rel_pct, gates.measurement_itl_rel_pct)


@dataclass(frozen=True)
class Comparison:
    """One metric's means on both sides, |Δ| and the bound it was judged against (all in ms)."""

    metric: str  # "TTFT" or "ITL"
    client_mean_ms: float
    server_mean_ms: float
    delta_ms: float
    bound_ms: float

    @property
    def agrees(self) -> bool:
        """|Δ| within the bound."""
        return self.delta_ms <= self.bound_ms

    def describe(self) -> str:
        """E.g. `TTFT mean: client 312.4 ms vs server 5.1 ms (|Δ| 307.3 ms > bound 25.0 ms)`."""
        sign = "<=" if self.agrees else ">"
        return (
            f"{self.metric} mean: client {self.client_mean_ms:.1f} ms vs server {self.server_mean_ms:.1f} ms "
            f"(|Δ| {self.delta_ms:.1f} ms {sign} bound {self.bound_ms:.1f} ms)"
        )


@dataclass(frozen=True)
class MeasurementCheck:
    """A step's verdict on its client-side numbers (phase.json `measurement`)."""

    status: MeasurementStatus
    comparisons: tuple[Comparison, ...] = ()
    reason: str | None = None  # unchecked: why; distortion: the failed comparisons in words

    def as_dict(self) -> dict:
        """JSON form."""
        return {"status": self.status, "comparisons": [asdict(c) for c in self.comparisons], "reason": self.reason}

    @classmethod
    def from_dict(cls, data: object) -> MeasurementCheck | None:
        """Inverse of as_dict; None for anything that is not one (damaged or absent evidence)."""
        if not isinstance(data, dict) or data.get("status") not in STATUSES:
            return None
        comparisons = []
        for raw in data.get("comparisons") or ():
            try:
                comparisons.append(
                    Comparison(str(raw["metric"]), *(float(raw[k]) for k in ("client_mean_ms", "server_mean_ms",
                                                                               "delta_ms", "bound_ms")))
                )  # fmt: skip
            except (KeyError, TypeError, ValueError):
                return None
        reason = data.get("reason")
        return cls(data["status"], tuple(comparisons), reason if isinstance(reason, str) else None)


def cross_check(
    client_ttft_mean_ms: float | None,
    client_itl_mean_ms: float | None,
    server: ServerLatency,
    bounds: MeasurementBounds = MeasurementBounds(),
) -> MeasurementCheck:
    """Compare the client's TTFT and ITL means with the server's over one step (rules in the module docstring)."""
    if server.reason is not None:
        return MeasurementCheck(UNCHECKED, reason=server.reason)
    if server.client_requests == 0:
        return MeasurementCheck(UNCHECKED, reason="no request finished: nothing to compare")
    if server.server_requests is None:
        return MeasurementCheck(UNCHECKED, reason="the server exports no e2e latency histogram: its requests "
                                                  "cannot be matched with the client's")  # fmt: skip
    if server.server_requests != server.client_requests:
        return MeasurementCheck(UNCHECKED, reason=f"request counts differ: {server.note}")
    comparisons = []
    ttft = server.mean_ms("time_to_first_token")
    if client_ttft_mean_ms is not None and ttft is not None:
        bound = max(bounds.ttft_abs_ms, bounds.ttft_rel_pct / 100.0 * ttft)
        comparisons.append(Comparison("TTFT", client_ttft_mean_ms, ttft, abs(client_ttft_mean_ms - ttft), bound))
    itl = server.mean_ms("inter_token_latency")
    if client_itl_mean_ms is not None and itl is not None:
        bound = bounds.itl_rel_pct / 100.0 * itl
        comparisons.append(Comparison("ITL", client_itl_mean_ms, itl, abs(client_itl_mean_ms - itl), bound))
    if not comparisons:
        return MeasurementCheck(UNCHECKED, reason="neither TTFT nor ITL has a mean on both sides")
    failed = [c for c in comparisons if not c.agrees]
    if failed:
        return MeasurementCheck(DISTORTED, tuple(comparisons), "; ".join(c.describe() for c in failed))
    return MeasurementCheck(AGREE, tuple(comparisons))
