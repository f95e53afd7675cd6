"""Request metrics as vLLM's `bench serve` defines them, and their aggregates. Pure functions.

Names follow vLLM. Aliases elsewhere: aiperf calls TPOT "inter token latency"; guidellm reports
"time per output token" including the first token. Here:
- TTFT  = arrival of the first chunk with non-empty `choices` - send time.
- ITL   = gaps between arrivals of consecutive chunks with non-empty `choices`.
- TPOT  = (E2EL - TTFT) / (n - 1), n = output tokens, defined for n > 1.
- E2EL  = arrival of the end of the stream - send time.
"""

from __future__ import annotations

import itertools
import math
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass

from runners.replay.records import RequestRecord

NS_PER_MS = 1_000_000


def percentile(values: Sequence[float], q: float) -> float | None:
    """The q-th percentile (0-100) by linear interpolation between closest ranks (numpy's default).

    With sorted values v and n = len(v): rank = (n - 1) * q / 100, result = v[floor] + (v[ceil] -
    v[floor]) * (rank - floor). None for no values.
    """
    if not values:
        return None
    ordered = sorted(values)
    rank = (len(ordered) - 1) * q / 100.0
    lo, hi = math.floor(rank), math.ceil(rank)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (rank - lo)


def ttft_ms(rec: RequestRecord) -> float | None:
    """TTFT in ms: first chunk with non-empty choices minus send time; None unless the request succeeded."""
    if rec.status != "ok" or rec.ttft_ns is None:
        return None
    return rec.ttft_ns / NS_PER_MS


def e2el_ms(rec: RequestRecord) -> float | None:
    """E2EL in ms: end of stream minus send time; None unless the request succeeded."""
    if rec.status != "ok" or rec.e2e_ns is None:
        return None
    return rec.e2e_ns / NS_PER_MS


def tpot_ms(rec: RequestRecord) -> float | None:
    """TPOT in ms = (E2EL - TTFT) / (n - 1) with n output tokens; None when n <= 1 or not ok."""
    ttft, e2e, n = ttft_ms(rec), e2el_ms(rec), rec.output_tokens
    if ttft is None or e2e is None or n is None or n <= 1:
        return None
    return (e2e - ttft) / (n - 1)


def itl_ms(rec: RequestRecord) -> list[float]:
    """ITL in ms: gaps between consecutive chunk arrivals; empty unless the request succeeded."""
    if rec.status != "ok":
        return []
    c = rec.chunk_ns
    return [(b - a) / NS_PER_MS for a, b in itertools.pairwise(c)]


def dispatch_lag_ms(rec: RequestRecord) -> float:
    """Actual send time minus scheduled send time, in ms (coordinated omission shows up here)."""
    return (rec.sent_ns - rec.scheduled_ns) / NS_PER_MS


@dataclass(frozen=True)
class PhaseStats:
    """Aggregates of one phase (or of any set of requests)."""

    requests: int
    ok: int
    failed: int
    wall_s: float
    output_tokens: int
    output_tok_s: float | None
    req_s: float | None
    ttft_p50_ms: float | None
    ttft_p95_ms: float | None
    tpot_p50_ms: float | None
    tpot_p95_ms: float | None
    itl_p50_ms: float | None
    itl_p95_ms: float | None
    e2el_p50_ms: float | None
    e2el_p95_ms: float | None
    dispatch_lag_p99_ms: float | None
    errors: dict[str, int]

    def as_dict(self) -> dict:
        """JSON form."""
        return asdict(self)


def phase_stats(records: Iterable[RequestRecord], wall_s: float) -> PhaseStats:
    """Aggregate `records` measured over `wall_s` seconds.

    Throughput counts only successful requests: output_tok_s = their output tokens / wall_s.
    """
    recs = list(records)
    ok = [r for r in recs if r.status == "ok"]
    ttfts = [v for v in map(ttft_ms, ok) if v is not None]
    tpots = [v for v in map(tpot_ms, ok) if v is not None]
    e2es = [v for v in map(e2el_ms, ok) if v is not None]
    itls = [v for r in ok for v in itl_ms(r)]
    tokens = sum(r.output_tokens or 0 for r in ok)
    lags = [dispatch_lag_ms(r) for r in recs if r.status != "cancelled"]
    return PhaseStats(
        requests=len(recs),
        ok=len(ok),
        failed=len(recs) - len(ok),
        wall_s=wall_s,
        output_tokens=tokens,
        output_tok_s=tokens / wall_s if wall_s > 0 else None,
        req_s=len(ok) / wall_s if wall_s > 0 else None,
        ttft_p50_ms=percentile(ttfts, 50),
        ttft_p95_ms=percentile(ttfts, 95),
        tpot_p50_ms=percentile(tpots, 50),
        tpot_p95_ms=percentile(tpots, 95),
        itl_p50_ms=percentile(itls, 50),
        itl_p95_ms=percentile(itls, 95),
        e2el_p50_ms=percentile(e2es, 50),
        e2el_p95_ms=percentile(e2es, 95),
        dispatch_lag_p99_ms=percentile(lags, 99),
        errors=dict(Counter(r.status for r in recs if r.status != "ok")),
    )
