"""Request metrics as vLLM's `bench serve` defines them, and their aggregates. Pure functions.

Names follow vLLM; docs/architecture.md lists where aiperf and guidellm use the same words for
other things (aiperf's "inter token latency" is vLLM's TPOT; guidellm's "time per output token"
includes the first token). Here:
- TTFT  = arrival of the first chunk with non-empty `choices` - send time.
- ITL per chunk (`itl_chunk_ms`) = gaps between arrivals of consecutive chunks with non-empty
  `choices`: one sample per SSE chunk, as vLLM's `bench serve` records it and as the server's
  `vllm:inter_token_latency_seconds` observes it (once per engine output, however many tokens).
- ITL per token (`itl_token_ms`), when the server said how many tokens each chunk brought
  (`continuous_usage_stats`): a chunk carrying k >= 1 tokens after a gap g from the previous
  token-carrying chunk gives k samples g / k. The first token-carrying chunk gives none (its
  extra tokens arrive with the first token); chunks bringing 0 tokens (the role-only delta) give
  none and do not start a gap. So the samples sum to last token chunk - first token chunk and
  number n - k_first. With one token per chunk both ITLs agree (the role chunk aside).
- ITL (the `itl_ms` distribution, PhaseStats' `itl_*`) = per token when every successful request of the set has
  its tokens per chunk (`itl_basis` "per_token"), else per chunk ("per_chunk"): one set never
  mixes the two.
- TPOT  = (E2EL - TTFT) / (n - 1), n = output tokens (from `usage`), defined for n > 1.
- E2EL  = arrival of the end of the stream - send time.
"""

from __future__ import annotations

import itertools
import math
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from typing import Literal

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


ItlBasis = Literal["per_token", "per_chunk"]


def itl_chunk_ms(rec: RequestRecord) -> list[float]:
    """ITL per chunk in ms: gaps between consecutive chunk arrivals; empty unless the request succeeded."""
    if rec.status != "ok":
        return []
    c = rec.chunk_ns
    return [(b - a) / NS_PER_MS for a, b in itertools.pairwise(c)]


def itl_token_ms(rec: RequestRecord) -> list[float] | None:
    """ITL per token in ms: a chunk of k >= 1 tokens after a gap g from the previous token chunk gives k x g/k.

    None when the tokens per chunk are unknown; empty unless the request succeeded.
    """
    if rec.chunk_tokens is None or len(rec.chunk_tokens) != len(rec.chunk_ns):
        return None
    if rec.status != "ok":
        return []
    values: list[float] = []
    previous = None
    for at, k in zip(rec.chunk_ns, rec.chunk_tokens, strict=True):
        if k <= 0:
            continue
        if previous is not None:
            values.extend([(at - previous) / NS_PER_MS / k] * k)
        previous = at
    return values


def itl_basis(records: Sequence[RequestRecord]) -> ItlBasis:
    """The ITL basis of a set: per token when it has successful requests and each has its tokens per chunk."""
    ok = [r for r in records if r.status == "ok"]
    return "per_token" if ok and all(itl_token_ms(r) is not None for r in ok) else "per_chunk"


def itl_values_ms(records: Sequence[RequestRecord]) -> tuple[ItlBasis, list[float]]:
    """The basis of `records` (`itl_basis`) and the ITL samples of its successful requests on it."""
    basis = itl_basis(records)
    per_request = itl_token_ms if basis == "per_token" else itl_chunk_ms
    return basis, [v for r in records if r.status == "ok" for v in per_request(r) or ()]


def dispatch_lag_ms(rec: RequestRecord) -> float:
    """Actual send time minus scheduled send time, in ms (coordinated omission shows up here)."""
    return (rec.sent_ns - rec.scheduled_ns) / NS_PER_MS


DEFAULT_PERCENTILES = (50.0, 90.0, 95.0, 99.0)


@dataclass(frozen=True)
class Distribution:
    """Summary of one metric over a phase: count, mean, population std, min, max, chosen percentiles.

    `percentiles` maps "p50", "p99.9", ... to values; every field is None when there are no values.
    """

    count: int
    mean: float | None
    std: float | None
    min: float | None
    max: float | None
    percentiles: dict[str, float | None]


def percentile_key(q: float) -> str:
    """The name of percentile q: 50 -> "p50", 99.9 -> "p99.9"."""
    return f"p{q:g}"


def distribution(values: Sequence[float], percentiles: Sequence[float] = DEFAULT_PERCENTILES) -> Distribution:
    """Mean, std = sqrt(sum((v - mean)^2) / n), min, max and `percentiles` of `values`."""
    n = len(values)
    pcts = {percentile_key(q): percentile(values, q) for q in percentiles}
    if not n:
        return Distribution(0, None, None, None, None, pcts)
    mean = math.fsum(values) / n
    std = math.sqrt(math.fsum((v - mean) ** 2 for v in values) / n)
    return Distribution(n, mean, std, min(values), max(values), pcts)


@dataclass(frozen=True)
class Slo:
    """Service-level objectives for goodput, in ms; None leaves a metric unconstrained."""

    ttft_ms: float | None = None
    tpot_ms: float | None = None
    e2el_ms: float | None = None

    @property
    def any(self) -> bool:
        """True when at least one objective is set."""
        return any(v is not None for v in (self.ttft_ms, self.tpot_ms, self.e2el_ms))


def meets_slo(rec: RequestRecord, slo: Slo) -> bool:
    """vLLM's goodput rule: a successful request whose TTFT, TPOT and E2EL are each <= its set objective.

    A request with one output token has no TPOT and meets a TPOT objective.
    """
    if rec.status != "ok":
        return False
    checks = ((slo.ttft_ms, ttft_ms(rec)), (slo.tpot_ms, tpot_ms(rec)), (slo.e2el_ms, e2el_ms(rec)))
    return all(limit is None or value is None or value <= limit for limit, value in checks)


@dataclass(frozen=True)
class PhaseStats:
    """Aggregates of one phase (or of any set of requests).

    Throughput counts successful requests over the phase's wall time: req_s = ok / wall_s,
    output_tok_s = their output tokens / wall_s, total_tok_s = (prompt + output tokens) / wall_s
    (None unless every successful request reported prompt tokens in `usage`), goodput_req_s =
    requests meeting every SLO / wall_s (None without SLOs). `output_tokens_from_chunks` counts
    requests whose token count was counted from chunks because the server sent no usage.
    `itl_*` and the `itl_ms` distribution are per token or per chunk as `itl_basis` says (rule in
    the module docstring); `itl_chunk_*` and `itl_chunk_ms` are always per chunk, the basis of
    vLLM's `bench serve` and of the server's ITL histogram. Latency figures (TTFT, TPOT, ITL, E2EL
    and their distributions) leave out the `latency_excluded` successful requests that were in
    flight while dispatch was paused (runners/replay/pauses.py); counts, throughput and goodput keep them.
    """

    requests: int
    ok: int
    failed: int
    wall_s: float
    output_tokens: int
    prompt_tokens: int | None
    output_tokens_from_chunks: int
    req_s: float | None
    output_tok_s: float | None
    total_tok_s: float | None
    goodput_req_s: float | None
    ttft_p50_ms: float | None
    ttft_p95_ms: float | None
    tpot_p50_ms: float | None
    tpot_p95_ms: float | None
    itl_p50_ms: float | None
    itl_p95_ms: float | None
    itl_basis: ItlBasis
    itl_chunk_p50_ms: float | None
    itl_chunk_p95_ms: float | None
    e2el_p50_ms: float | None
    e2el_p95_ms: float | None
    dispatch_lag_p99_ms: float | None
    distributions: dict[str, Distribution]
    errors: dict[str, int]
    latency_excluded: int = 0

    def as_dict(self) -> dict:
        """JSON form."""
        return asdict(self)


def _rate(amount: float, wall_s: float) -> float | None:
    return amount / wall_s if wall_s > 0 else None


def phase_stats(
    records: Iterable[RequestRecord],
    wall_s: float,
    percentiles: Sequence[float] = DEFAULT_PERCENTILES,
    slo: Slo | None = None,
    exclude_paused: bool = True,
) -> PhaseStats:
    """Aggregate `records` measured over `wall_s` seconds (rules in PhaseStats' docstring); with
    `exclude_paused` False the latency figures keep the requests in flight during a pause too."""
    recs = list(records)
    ok = [r for r in recs if r.status == "ok"]
    timed = [r for r in ok if not r.during_pause] if exclude_paused else ok
    basis, itl = itl_values_ms(timed)
    values = {
        "ttft_ms": [v for v in map(ttft_ms, timed) if v is not None],
        "tpot_ms": [v for v in map(tpot_ms, timed) if v is not None],
        "itl_ms": itl,
        "itl_chunk_ms": [v for r in timed for v in itl_chunk_ms(r)],
        "e2el_ms": [v for v in map(e2el_ms, timed) if v is not None],
        "dispatch_lag_ms": [dispatch_lag_ms(r) for r in recs if r.status != "cancelled"],
    }
    dists = {name: distribution(v, percentiles) for name, v in values.items()}
    tokens = sum(r.output_tokens or 0 for r in ok)
    prompt = None if any(r.prompt_tokens is None for r in ok) or not ok else sum(r.prompt_tokens or 0 for r in ok)
    goodput = _rate(sum(meets_slo(r, slo) for r in ok), wall_s) if slo and slo.any else None
    return PhaseStats(
        requests=len(recs),
        ok=len(ok),
        failed=len(recs) - len(ok),
        wall_s=wall_s,
        output_tokens=tokens,
        prompt_tokens=prompt,
        output_tokens_from_chunks=sum(r.output_tokens_source == "chunks" for r in ok),
        req_s=_rate(len(ok), wall_s),
        output_tok_s=_rate(tokens, wall_s),
        total_tok_s=_rate(tokens + prompt, wall_s) if prompt is not None else None,
        goodput_req_s=goodput,
        ttft_p50_ms=percentile(values["ttft_ms"], 50),
        ttft_p95_ms=percentile(values["ttft_ms"], 95),
        tpot_p50_ms=percentile(values["tpot_ms"], 50),
        tpot_p95_ms=percentile(values["tpot_ms"], 95),
        itl_p50_ms=percentile(values["itl_ms"], 50),
        itl_p95_ms=percentile(values["itl_ms"], 95),
        itl_basis=basis,
        itl_chunk_p50_ms=percentile(values["itl_chunk_ms"], 50),
        itl_chunk_p95_ms=percentile(values["itl_chunk_ms"], 95),
        e2el_p50_ms=percentile(values["e2el_ms"], 50),
        e2el_p95_ms=percentile(values["e2el_ms"], 95),
        dispatch_lag_p99_ms=percentile(values["dispatch_lag_ms"], 99),
        distributions=dists,
        errors=dict(Counter(r.status for r in recs if r.status != "ok")),
        latency_excluded=len(ok) - len(timed),
    )
