"""The server's own latency histograms over one step: snapshots of `/metrics`, their difference, and
estimates from it (pure functions, no I/O).

Kept, under vLLM's names (vllm/v1/metrics/loggers.py; without the `vllm:` prefix and `_seconds` suffix):
`time_to_first_token` (arrival -> first token), `inter_token_latency` (one sample per engine output after
the first, not per token), `e2e_request_latency` (arrival -> finish), `request_queue_time`,
`request_prefill_time`, `request_decode_time`, `request_time_per_output_token` (per request decode time /
(tokens - 1)). Every label set (`model_name`, `engine`) of a histogram is summed: cumulative bucket counts
by `le`, `_sum` and `_count`.

A step's numbers are the difference of two snapshots (`delta`): Δcount requests (or outputs), mean =
Δsum / Δcount, percentiles estimated from the bucket deltas as Prometheus `histogram_quantile` does
(`estimate_quantile`). A count that went down between the snapshots is a server restart: then nothing is
computed and the result says so. A histogram the server does not export is absent (None), never 0; one
that appears between the snapshots counted from 0 (prometheus_client exports a labelled histogram only
after its first observation). Results are in milliseconds.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

from prometheus_client.parser import text_string_to_metric_families

from runners.replay.server_metrics import MetricsParseError

HISTOGRAMS = (
    "time_to_first_token",
    "inter_token_latency",
    "e2e_request_latency",
    "request_queue_time",
    "request_prefill_time",
    "request_decode_time",
    "request_time_per_output_token",
)
QUANTILES = (50, 90, 99)
_FAMILIES = {f"vllm:{name}_seconds": name for name in HISTOGRAMS}


@dataclass(frozen=True)
class Histogram:
    """One histogram summed over its label sets: cumulative counts per upper bound (ascending, the last
    +Inf), the sum of observations (seconds) and their count."""

    buckets: tuple[tuple[float, float], ...]
    sum: float
    count: float


# A snapshot: metric name (HISTOGRAMS) -> its histogram; a metric the server does not export is missing.
Snapshot = dict[str, Histogram]


@dataclass(frozen=True)
class LatencyStat:
    """A histogram's difference over a step: `count` observations, their mean and estimated percentiles (ms)."""

    count: int
    mean_ms: float | None
    p50_ms: float | None
    p90_ms: float | None
    p99_ms: float | None

    def as_dict(self) -> dict:
        """JSON form."""
        return asdict(self)


@dataclass(frozen=True)
class SnapshotDelta:
    """Per kept metric its LatencyStat (None when the server does not export it), or why none was computed."""

    stats: dict[str, LatencyStat | None]
    restarted: tuple[str, ...] = ()  # metrics whose count went down: the server restarted between the snapshots

    @property
    def reason(self) -> str | None:
        """Why the stats are not computed, None when they are."""
        if self.restarted:
            return (
                f"the server restarted during the step ({', '.join(self.restarted)} went down between the "
                "snapshots): its histograms do not cover the step"
            )
        if all(stat is None for stat in self.stats.values()):
            return "the server exports none of vLLM's latency histograms"
        return None


def parse_histograms(text: str) -> Snapshot:
    """The kept histograms of a Prometheus text body, each summed over its label sets.

    Bucket counts are summed per `le` bound, `_sum` and `_count` over label sets; a histogram with no
    sample is left out. Raises MetricsParseError when the body is not Prometheus text exposition.
    """
    buckets: dict[str, dict[float, float]] = {}
    sums: dict[str, float] = {}
    counts: dict[str, float] = {}
    try:
        for family in text_string_to_metric_families(text):
            name = _FAMILIES.get(family.name)
            if name is None:
                continue
            for sample in family.samples:
                value = float(sample.value)
                if sample.name.endswith("_bucket"):
                    le = float(sample.labels["le"])
                    per_le = buckets.setdefault(name, {})
                    per_le[le] = per_le.get(le, 0.0) + value
                elif sample.name.endswith("_sum"):
                    sums[name] = sums.get(name, 0.0) + value
                elif sample.name.endswith("_count"):
                    counts[name] = counts.get(name, 0.0) + value
    except (ValueError, IndexError, TypeError, KeyError) as exc:
        reason = str(exc) or f"malformed line ({type(exc).__name__})"
        raise MetricsParseError(f"not Prometheus text exposition: {reason}; body starts {text[:80]!r}") from exc
    snapshot: Snapshot = {}
    for name in HISTOGRAMS:
        if name in counts or name in buckets:
            per_le = buckets.get(name, {})
            count = counts.get(name, per_le.get(math.inf, 0.0))
            snapshot[name] = Histogram(tuple(sorted(per_le.items())), sums.get(name, 0.0), count)
    return snapshot


def estimate_quantile(q: float, buckets: tuple[tuple[float, float], ...]) -> float | None:
    """Prometheus `histogram_quantile(q, ...)` over cumulative `(upper bound, count)` buckets (ascending, +Inf last).

    rank = q · total (the +Inf bucket's count); the first bucket whose count reaches the rank holds it,
    and the value is interpolated linearly inside it: lower + (upper - lower) · (rank - count below) /
    (count in the bucket), with lower bound 0 for the first bucket. A rank in the +Inf bucket gives the
    last finite bound. None without observations or without a finite bucket.
    """
    if len(buckets) < 2 or not math.isinf(buckets[-1][0]) or buckets[-1][1] <= 0:
        return None
    rank = q * buckets[-1][1]
    b = next((i for i, (_, count) in enumerate(buckets[:-1]) if count >= rank), len(buckets) - 1)
    if b == len(buckets) - 1:
        return buckets[-2][0]
    upper, count = buckets[b]
    if b == 0 and upper <= 0:
        return upper
    lower, below = (buckets[b - 1][0], buckets[b - 1][1]) if b > 0 else (0.0, 0.0)
    in_bucket = count - below
    if in_bucket <= 0:
        return upper
    return lower + (upper - lower) * (rank - below) / in_bucket


def _bucket_delta(before: Histogram | None, after: Histogram) -> tuple[tuple[float, float], ...]:
    """Cumulative counts of `after` minus `before` per bound (a bound `before` lacks counts from 0)."""
    earlier = dict(before.buckets) if before else {}
    return tuple((le, count - earlier.get(le, 0.0)) for le, count in after.buckets)


def _ms(seconds: float | None) -> float | None:
    return None if seconds is None else seconds * 1000.0


def delta(before: Snapshot, after: Snapshot) -> SnapshotDelta:
    """The step's LatencyStat per kept metric from the snapshots taken at its start and end.

    A metric absent at the end is None; absent at the start, it counts from 0. A count (or a bucket)
    lower at the end than at the start is a restart: `restarted` names it and no stat is computed.
    """
    restarted = []
    for name, end in after.items():
        start = before.get(name)
        if start is not None and (end.count < start.count or any(c < 0 for _, c in _bucket_delta(start, end))):
            restarted.append(name)
    if restarted:
        return SnapshotDelta(dict.fromkeys(HISTOGRAMS), tuple(restarted))
    stats: dict[str, LatencyStat | None] = {}
    for name in HISTOGRAMS:
        end = after.get(name)
        if end is None:
            stats[name] = None
            continue
        start = before.get(name)
        count = end.count - (start.count if start else 0.0)
        total = end.sum - (start.sum if start else 0.0)
        buckets = _bucket_delta(start, end)
        p50, p90, p99 = (_ms(estimate_quantile(q / 100, buckets)) for q in QUANTILES)
        mean = total / count * 1000.0 if count > 0 else None
        stats[name] = LatencyStat(round(count), mean, p50, p90, p99)
    return SnapshotDelta(stats)


@dataclass(frozen=True)
class ServerLatency:
    """The server's latency histograms over one step (phase.json `server_latency`).

    `metrics`: per kept metric its LatencyStat, None where the server does not export it (all None
    when `reason` says nothing could be computed). `server_requests`: the e2e histogram's Δcount
    (requests the server finished), `client_requests`: requests the client saw finish. `note` says
    when the two differ; `settle_s` is how long the end snapshot waited for the server's count.
    """

    metrics: dict[str, LatencyStat | None]
    client_requests: int
    server_requests: int | None = None
    reason: str | None = None
    note: str | None = None
    settle_s: float = 0.0

    def as_dict(self) -> dict:
        """JSON form."""
        return {
            "metrics": {name: stat.as_dict() if stat else None for name, stat in self.metrics.items()},
            "client_requests": self.client_requests,
            "server_requests": self.server_requests,
            "reason": self.reason,
            "note": self.note,
            "settle_s": round(self.settle_s, 3),
        }

    @classmethod
    def unavailable(cls, reason: str, client_requests: int) -> ServerLatency:
        """Nothing computed, for `reason` (no /metrics, a failed scrape, ...)."""
        return cls(dict.fromkeys(HISTOGRAMS), client_requests, reason=reason)

    def mean_ms(self, name: str) -> float | None:
        """The mean of metric `name` over the step, None when not computed."""
        stat = self.metrics.get(name)
        return stat.mean_ms if stat else None


def server_requests(before: Snapshot, after: Snapshot) -> int | None:
    """Requests the server finished between the snapshots (the e2e histogram's Δcount); None if not exported."""
    end = after.get("e2e_request_latency")
    if end is None:
        return None
    start = before.get("e2e_request_latency")
    return round(end.count - (start.count if start else 0.0))


def server_latency(before: Snapshot, after: Snapshot, client_requests: int, settle_s: float = 0.0) -> ServerLatency:
    """The step's ServerLatency from its start and end snapshots and the client's finished-request count."""
    step = delta(before, after)
    if step.reason is not None:
        return ServerLatency(dict.fromkeys(HISTOGRAMS), client_requests, reason=step.reason, settle_s=settle_s)
    served = server_requests(before, after)
    note = None
    if served is None:
        note = "the server exports no e2e latency histogram: its request count is unknown"
    elif served > client_requests:
        note = (
            f"the server finished {served} requests, the client {client_requests}: other traffic shared the "
            "server during the step, and its histograms include it"
        )
    elif served < client_requests:
        note = (
            f"the server recorded {served} finished requests, the client saw {client_requests} finish "
            f"(after waiting {settle_s:.1f} s): the histograms do not cover the client's requests"
        )
    return ServerLatency(step.stats, client_requests, served, note=note, settle_s=settle_s)
