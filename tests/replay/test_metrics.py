"""Metric definitions, each against a hand-computed example."""

from __future__ import annotations

import pytest

from runners.replay.metrics import (
    dispatch_lag_ms,
    itl_basis,
    itl_chunk_ms,
    itl_token_ms,
    percentile,
    phase_stats,
    tpot_ms,
    ttft_ms,
)
from runners.replay.records import RequestRecord
from tests.support.records import NS_PER_MS as MS
from tests.support.records import request_record as record


def test_percentile_is_linear_between_closest_ranks() -> None:
    assert percentile([], 50) is None
    assert percentile([7.0], 95) == 7.0
    # sorted [1, 2, 3, 4]: rank for p50 = 1.5 -> 2.5; p95 = 2.85 -> 3 + 0.85 = 3.85
    assert percentile([4.0, 1.0, 3.0, 2.0], 50) == 2.5
    assert percentile([4.0, 1.0, 3.0, 2.0], 95) == pytest.approx(3.85)


def test_ttft_tpot_itl_by_hand() -> None:
    # first chunk at 100 ms, then 120, 150, 190; stream ends at 200 ms; 4 output tokens
    rec = record(ttft_ns=100 * MS, chunk_ns=[100 * MS, 120 * MS, 150 * MS, 190 * MS], e2e_ns=200 * MS,
                 output_tokens=4, sent_ns=3 * MS, scheduled_ns=1 * MS)  # fmt: skip
    assert ttft_ms(rec) == 100.0
    assert tpot_ms(rec) == pytest.approx((200 - 100) / 3)  # (E2EL - TTFT) / (n - 1)
    assert itl_chunk_ms(rec) == [20.0, 30.0, 40.0]
    assert dispatch_lag_ms(rec) == 2.0


def test_tpot_undefined_for_one_token_and_failures_count_nowhere() -> None:
    assert tpot_ms(record(ttft_ns=MS, e2e_ns=2 * MS, output_tokens=1)) is None
    failed = record(ttft_ns=MS, e2e_ns=2 * MS, output_tokens=5, status="timeout", error="x")
    assert ttft_ms(failed) is None and tpot_ms(failed) is None and itl_chunk_ms(failed) == []


def test_phase_stats_throughput_counts_only_successes() -> None:
    ok = [record(index=i, ttft_ns=(10 + i) * MS, e2e_ns=(50 + i) * MS, output_tokens=5, chunk_ns=[(10 + i) * MS])
          for i in range(3)]  # fmt: skip
    bad = record(index=9, status="http_error", error="HTTP 500", output_tokens=None)
    stats = phase_stats([*ok, bad], wall_s=2.0)
    assert (stats.requests, stats.ok, stats.failed) == (4, 3, 1)
    assert stats.output_tokens == 15 and stats.output_tok_s == 7.5 and stats.req_s == 1.5
    assert stats.ttft_p50_ms == 11.0 and stats.tpot_p50_ms == pytest.approx(10.0)
    assert stats.errors == {"http_error": 1}


def test_record_round_trips_and_ignores_unknown_keys() -> None:
    rec = record(ttft_ns=5, chunk_ns=[5, 6], chunk_tokens=[0, 3])
    assert RequestRecord.from_dict({**rec.as_dict(), "added_later": 1}) == rec
    old_line = {k: v for k, v in rec.as_dict().items() if k != "chunk_tokens"}  # requests.jsonl before chunk_tokens
    assert RequestRecord.from_dict(old_line).chunk_tokens is None


def test_itl_per_token_and_per_chunk_by_hand() -> None:
    # role chunk at 100 ms (0 tokens), first token chunk at 101 ms with 2 tokens, then 3 tokens at
    # 130, 1 at 160, 2 at 190; the stream ends at 200 ms; usage says 8 tokens.
    rec = record(ttft_ns=100 * MS, chunk_ns=[100 * MS, 101 * MS, 130 * MS, 160 * MS, 190 * MS],
                 chunk_tokens=[0, 2, 3, 1, 2], e2e_ns=200 * MS, output_tokens=8)  # fmt: skip
    assert itl_chunk_ms(rec) == [1.0, 29.0, 30.0, 30.0]  # one sample per chunk, the role chunk's gap included
    # per token: nothing for the first token chunk (its second token came with the first), then
    # 29/3 three times, 30 once, 30/2 twice: n - k_first = 6 samples summing to 190 - 101
    assert itl_token_ms(rec) == pytest.approx([29 / 3] * 3 + [30.0] + [15.0] * 2)
    assert sum(itl_token_ms(rec) or []) == pytest.approx(190 - 101)
    assert tpot_ms(rec) == pytest.approx((200 - 100) / 7)  # TPOT keeps (E2EL - TTFT) / (n - 1), n from usage


def test_itl_per_token_is_unknown_without_tokens_per_chunk_and_empty_for_failures() -> None:
    assert itl_token_ms(record(chunk_ns=[MS, 2 * MS])) is None  # a chunk-only server
    assert itl_token_ms(record(chunk_ns=[MS, 2 * MS], chunk_tokens=[1])) is None  # not one count per chunk
    failed = record(chunk_ns=[MS, 2 * MS], chunk_tokens=[1, 1], status="timeout", error="x")
    assert itl_token_ms(failed) == []
    # one token per chunk: per token and per chunk agree
    one_each = record(chunk_ns=[10 * MS, 15 * MS, 25 * MS], chunk_tokens=[1, 1, 1])
    assert itl_token_ms(one_each) == itl_chunk_ms(one_each) == [5.0, 10.0]


def test_phase_stats_use_per_token_itl_only_when_every_success_has_it() -> None:
    three = [record(index=i, ttft_ns=10 * MS, chunk_ns=[10 * MS, 40 * MS, 70 * MS], chunk_tokens=[1, 3, 3],
                    e2e_ns=70 * MS, output_tokens=7) for i in range(2)]  # fmt: skip
    failed_without = record(index=8, chunk_ns=[MS, 2 * MS], status="timeout", error="x")
    stats = phase_stats([*three, failed_without], wall_s=1.0)  # a failure does not decide the basis
    assert stats.itl_basis == "per_token"
    assert stats.itl_p50_ms == pytest.approx(10.0) and stats.distributions["itl_ms"].count == 12
    assert stats.itl_chunk_p50_ms == 30.0 and stats.distributions["itl_chunk_ms"].count == 4
    assert stats.tpot_p50_ms == pytest.approx(60 / 6)
    unknown = record(index=9, ttft_ns=10 * MS, chunk_ns=[10 * MS, 20 * MS], e2e_ns=20 * MS, output_tokens=2)
    mixed = phase_stats([*three, unknown], wall_s=1.0)
    assert mixed.itl_basis == "per_chunk" == itl_basis([*three, unknown])
    assert mixed.itl_p50_ms == mixed.itl_chunk_p50_ms == 30.0  # one set never mixes the bases
    assert mixed.distributions["itl_ms"] == mixed.distributions["itl_chunk_ms"]
    assert itl_basis([]) == "per_chunk" and phase_stats([], wall_s=1.0).itl_basis == "per_chunk"


def test_distribution_goodput_and_total_throughput_by_hand() -> None:
    from runners.replay.metrics import Slo, distribution, meets_slo

    d = distribution([1.0, 2.0, 3.0, 4.0], (50, 99.9))
    # mean 2.5; population std sqrt((2.25 + 0.25 + 0.25 + 2.25) / 4) = sqrt(1.25)
    assert (d.count, d.mean, d.min, d.max) == (4, 2.5, 1.0, 4.0)
    assert d.std == pytest.approx(1.25**0.5)
    assert d.percentiles == {"p50": 2.5, "p99.9": pytest.approx(3.997)}
    assert distribution([]).mean is None and distribution([]).percentiles["p99"] is None
    # TTFT 10/20/30 ms, E2EL 50/60/200 ms, 5 tokens -> TPOT 10/10/42.5 ms
    recs = [
        record(index=i, ttft_ns=t * MS, e2e_ns=e * MS, output_tokens=5, prompt_tokens=7)
        for i, (t, e) in enumerate([(10, 50), (20, 60), (30, 200)])
    ]
    slo = Slo(ttft_ms=25, tpot_ms=20)
    assert [meets_slo(r, slo) for r in recs] == [True, True, False]
    stats = phase_stats(recs, wall_s=2.0, slo=slo)
    assert stats.goodput_req_s == 1.0  # two requests meet both objectives in 2 s
    assert stats.total_tok_s == (3 * 7 + 3 * 5) / 2.0
    assert phase_stats(recs, wall_s=2.0).goodput_req_s is None  # no objectives, no goodput
    no_prompt = [*recs, record(index=9, ttft_ns=MS, e2e_ns=2 * MS, output_tokens=2)]
    assert phase_stats(no_prompt, wall_s=2.0).total_tok_s is None  # a request without usage.prompt_tokens
