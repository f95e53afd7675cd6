"""What a pause did to a step, each against a hand-computed example: idle and in-flight time, the requests marked,
the latency figures that leave them out, and phase.json's account read back (also as older runners wrote it)."""

from __future__ import annotations

import pytest

from runners.evidence.step_files import recorded_pause
from runners.replay.metrics import phase_stats
from runners.replay.pauses import PauseAccount, account_pauses, lifetime_s, merge, overlap_s, paused_text
from tests.support.records import NS_PER_MS as MS
from tests.support.records import request_record as record

S = 1_000_000_000


def test_spans_merge_and_overlap_by_hand() -> None:
    assert merge([(3.0, 4.0), (0.0, 1.0), (0.5, 2.0), (5.0, 5.0)]) == [(0.0, 2.0), (3.0, 4.0)]
    # pauses [1, 3] and [6, 7]; busy [0, 1.5] and [2.5, 6.5]: overlap 0.5 + 0.5 + 0.5
    assert overlap_s([(1.0, 3.0), (6.0, 7.0)], [(0.0, 1.5), (2.5, 6.5)]) == pytest.approx(1.5)
    assert overlap_s([], [(0.0, 1.0)]) == 0.0


def test_a_request_lives_from_send_to_its_end_whatever_its_status() -> None:
    assert lifetime_s(record(sent_ns=1 * S, ended_ns=3 * S, e2e_ns=None)) == (1.0, 3.0)
    assert lifetime_s(record(sent_ns=1 * S, e2e_ns=S // 2)) == (1.0, 1.5)  # written before ended_ns existed
    assert lifetime_s(record(sent_ns=1 * S, status="timeout")) == (1.0, 1.0)


def test_a_pause_splits_into_drain_and_idle() -> None:
    # paused from 1 s to 4 s; request a was sent at 0.5 s and ended at 2 s (in flight: the drain), b ran after
    drained = record(index=0, sent_ns=S // 2, ended_ns=2 * S, during_pause=True)
    after = record(index=1, sent_ns=4 * S, ended_ns=5 * S)
    account = account_pauses([(1.0, 4.0)], [drained, after])
    assert account == PauseAccount(((1.0, 4.0),), paused_s=3.0, idle_s=2.0, in_flight_s=1.0, requests=1)
    assert account.as_dict() == {
        "intervals": [[1.0, 4.0]], "paused_s": 3.0, "idle_s": 2.0, "in_flight_s": 1.0, "requests": 1
    }  # fmt: skip
    assert account_pauses([], [after]) == PauseAccount()
    nothing_in_flight = account_pauses([(0.0, 2.5)], [after])  # a pause before the first request: all idle
    assert (nothing_in_flight.idle_s, nothing_in_flight.in_flight_s) == (2.5, 0.0)


def test_latency_figures_leave_out_requests_in_flight_during_a_pause_and_counts_keep_them() -> None:
    steady = [record(index=i, ttft_ns=100 * MS, e2e_ns=500 * MS, output_tokens=5) for i in range(3)]
    drained = record(index=3, ttft_ns=10 * MS, e2e_ns=50 * MS, output_tokens=5, during_pause=True)
    stats = phase_stats([*steady, drained], wall_s=2.0)
    assert (stats.requests, stats.ok, stats.output_tokens, stats.output_tok_s) == (4, 4, 20, 10.0)
    assert stats.latency_excluded == 1
    assert stats.ttft_p50_ms == 100.0 and stats.tpot_p95_ms == pytest.approx(100.0)  # (500 - 100) / 4
    assert stats.distributions["ttft_ms"].count == 3
    every = phase_stats([*steady, drained], wall_s=2.0, exclude_paused=False)  # what the server's histograms saw
    assert every.latency_excluded == 0 and every.distributions["ttft_ms"].count == 4
    assert every.distributions["ttft_ms"].mean == pytest.approx((3 * 100 + 10) / 4)


def test_phase_json_gives_its_pause_back_and_an_older_one_counts_the_whole_pause_in_flight() -> None:
    written = account_pauses([(1.0, 4.0)], [record(sent_ns=S // 2, ended_ns=2 * S, during_pause=True)]).as_dict()
    assert recorded_pause({"paused_s": 3.0, "pause": written}) == PauseAccount(((1.0, 4.0),), 3.0, 2.0, 1.0, 1)
    # a runner before pauses were accounted: the wall time includes all of it
    assert recorded_pause({"paused_s": 21.0}) == PauseAccount(paused_s=21.0, in_flight_s=21.0)
    assert recorded_pause({}) == PauseAccount()
    damaged = {"pause": {"intervals": [[1, "x"], "y", [2, 3]], "paused_s": "3", "idle_s": -1, "requests": True}}
    assert recorded_pause(damaged) == PauseAccount(((2.0, 3.0),))


def test_paused_cells_say_how_much_was_left_out_of_the_wall_time() -> None:
    assert paused_text(0.0, 0.0) == "0" and paused_text(None, None) == "0"
    assert paused_text(21.04, 20.36) == "21.0 (20.4 excluded from wall)"
