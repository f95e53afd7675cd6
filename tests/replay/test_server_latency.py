"""The server's latency histograms: parsing, snapshot deltas, histogram_quantile, and the client/server
cross-check, against hand-computed values; and the real engine's histograms over loopback HTTP."""

from __future__ import annotations

import math

import httpx
import pytest

from runners.plan.sections import GatesSpec
from runners.replay.measurement_check import (
    AGREE,
    DISTORTED,
    UNCHECKED,
    MeasurementBounds,
    MeasurementCheck,
    cross_check,
)
from runners.replay.server_latency import (
    HISTOGRAMS,
    Histogram,
    LatencyStat,
    ServerLatency,
    delta,
    estimate_quantile,
    parse_histograms,
    server_latency,
)
from runners.replay.server_metrics import MetricsParseError
from runners.soak.server_latency_probe import StepLatencyProbe

INF = math.inf


def ttft_text(engine0: tuple, engine1: tuple) -> str:
    """A vLLM-like TTFT histogram with two engines; each engine is (c_0.01, c_0.05, c_0.1, c_inf, sum)."""
    lines = [
        "# HELP vllm:time_to_first_token_seconds Histogram of time to first token in seconds.",
        "# TYPE vllm:time_to_first_token_seconds histogram",
    ]
    for engine, (a, b, c, inf, total) in (("0", engine0), ("1", engine1)):
        labels = f'engine="{engine}",model_name="m"'
        for le, count in (("0.01", a), ("0.05", b), ("0.1", c), ("+Inf", inf)):
            lines.append(f'vllm:time_to_first_token_seconds_bucket{{{labels},le="{le}"}} {count}')
        lines.append(f"vllm:time_to_first_token_seconds_count{{{labels}}} {inf}")
        lines.append(f"vllm:time_to_first_token_seconds_sum{{{labels}}} {total}")
    lines += [
        "# HELP vllm:time_to_first_token_seconds_created Created.",
        "# TYPE vllm:time_to_first_token_seconds_created gauge",
        'vllm:time_to_first_token_seconds_created{engine="0",model_name="m"} 1.7e9',
        "# HELP vllm:num_requests_running Running.",
        "# TYPE vllm:num_requests_running gauge",
        'vllm:num_requests_running{engine="0",model_name="m"} 3.0',
    ]
    return "\n".join(lines) + "\n"


BEFORE = ttft_text((1, 3, 4, 4, 0.12), (0, 1, 2, 2, 0.11))
AFTER = ttft_text((3, 8, 10, 11, 0.62), (0, 3, 6, 7, 0.51))


def test_parse_sums_label_sets_per_bucket_and_leaves_out_what_is_not_exported() -> None:
    snap = parse_histograms(BEFORE)
    assert set(snap) == {"time_to_first_token"}  # ITL, e2e, queue, ... not exported: absent, not 0
    h = snap["time_to_first_token"]
    assert h.buckets == ((0.01, 1.0), (0.05, 4.0), (0.1, 6.0), (INF, 6.0))
    assert h.count == 6.0 and h.sum == pytest.approx(0.23)
    assert parse_histograms("") == {}
    with pytest.raises(MetricsParseError, match="not Prometheus text exposition"):
        parse_histograms('vllm:time_to_first_token_seconds_bucket{le="0.1"} many\n')


def test_delta_mean_and_percentiles_by_hand() -> None:
    step = delta(parse_histograms(BEFORE), parse_histograms(AFTER))
    assert step.reason is None and step.restarted == ()
    ttft = step.stats["time_to_first_token"]
    # Δ buckets: 0.01: 2, 0.05: 7, 0.1: 10, +Inf: 12; Δsum 0.90 s over 12 -> mean 75 ms
    assert ttft is not None and ttft.count == 12 and ttft.mean_ms == pytest.approx(75.0)
    # p50: rank 6 falls in (0.01, 0.05] holding 5 (2 below): 0.01 + 0.04 * (6 - 2) / 5 = 0.042 s
    assert ttft.p50_ms == pytest.approx(42.0)
    # p90: rank 10.8 is above the last finite bucket's 10: the +Inf bucket gives the last finite bound
    assert ttft.p90_ms == pytest.approx(100.0) and ttft.p99_ms == pytest.approx(100.0)
    assert all(step.stats[name] is None for name in HISTOGRAMS if name != "time_to_first_token")


def test_histogram_quantile_edges() -> None:
    buckets = ((0.01, 2.0), (0.05, 7.0), (0.1, 10.0), (INF, 12.0))
    assert estimate_quantile(0.1, buckets) == pytest.approx(0.01 * 1.2 / 2)  # first bucket: lower bound 0
    assert estimate_quantile(0.5, ((1.0, 0.0), (2.0, 4.0), (INF, 4.0))) == pytest.approx(1.5)
    assert estimate_quantile(0.5, ((0.1, 0.0), (INF, 0.0))) is None  # no observations
    assert estimate_quantile(0.5, ((INF, 3.0),)) is None  # no finite bucket
    assert estimate_quantile(1.0, buckets) == 0.1


def test_a_count_that_goes_down_is_a_restart_and_nothing_is_computed() -> None:
    step = delta(parse_histograms(AFTER), parse_histograms(BEFORE))
    assert step.restarted == ("time_to_first_token",)
    assert all(v is None for v in step.stats.values())
    assert "restarted during the step" in (step.reason or "")
    latency = server_latency(parse_histograms(AFTER), parse_histograms(BEFORE), client_requests=5)
    assert latency.reason == step.reason and latency.server_requests is None


def test_a_histogram_that_appears_during_the_step_counts_from_zero() -> None:
    after = {"e2e_request_latency": Histogram(((1.0, 3.0), (INF, 4.0)), 2.0, 4.0)}
    step = delta({}, after)
    assert step.stats["e2e_request_latency"] == LatencyStat(4, 500.0, pytest.approx(1000.0 * 2 / 3), 1000.0, 1000.0)
    assert delta({}, {}).reason == "the server exports none of vLLM's latency histograms"


def latency(ttft_ms: float | None, itl_ms: float | None, client: int = 10, server: int | None = 10) -> ServerLatency:
    def stat(mean: float | None) -> LatencyStat | None:
        return None if mean is None else LatencyStat(10, mean, mean, mean, mean)

    metrics = dict.fromkeys(HISTOGRAMS)
    metrics.update(time_to_first_token=stat(ttft_ms), inter_token_latency=stat(itl_ms))
    return ServerLatency(metrics, client, server, note=None if server == client else f"server {server}")


@pytest.mark.parametrize(
    ("client_ttft", "client_itl", "server", "status", "words"),
    [
        (12.0, 5.0, latency(8.7, 4.0), AGREE, None),
        # TTFT: |Δ| 24 ms within the 25 ms floor; 26 ms is not (server mean 10: 50 % is only 5 ms)
        (34.0, 4.0, latency(10.0, 4.0), AGREE, None),
        (36.0, 4.0, latency(10.0, 4.0), DISTORTED, "TTFT mean: client 36.0 ms vs server 10.0 ms"),
        # a large server mean: the relative bound (50 % of 200 = 100 ms) applies
        (299.0, 4.0, latency(200.0, 4.0), AGREE, None),
        (301.0, 4.0, latency(200.0, 4.0), DISTORTED, "(|Δ| 101.0 ms > bound 100.0 ms)"),
        # ITL: 50 % of the server's mean
        (10.0, 6.0, latency(10.0, 4.0), AGREE, None),
        (10.0, 6.1, latency(10.0, 4.0), DISTORTED, "ITL mean: client 6.1 ms vs server 4.0 ms"),
        (1547.0, 4.0, latency(8.7, 4.0), DISTORTED, "client 1547.0 ms vs server 8.7 ms"),
        # only one side of ITL: TTFT alone decides
        (10.0, None, latency(10.0, 4.0), AGREE, None),
        (10.0, 4.0, latency(None, None), UNCHECKED, "neither TTFT nor ITL"),
        (10.0, 4.0, latency(10.0, 4.0, client=10, server=12), UNCHECKED, "request counts differ: server 12"),
        (10.0, 4.0, latency(10.0, 4.0, client=10, server=None), UNCHECKED, "no e2e latency histogram"),
        (None, None, latency(10.0, 4.0, client=0, server=0), UNCHECKED, "no request finished"),
        (10.0, 4.0, ServerLatency.unavailable("scraping x failed: HTTP 404", 10), UNCHECKED, "HTTP 404"),
    ],
)
def test_cross_check_table(client_ttft, client_itl, server, status, words) -> None:
    check = cross_check(client_ttft, client_itl, server)
    assert check.status == status
    if words:
        assert words in (check.reason or "")
    assert MeasurementCheck.from_dict(check.as_dict()) == check


def test_bounds_come_from_the_plan() -> None:
    gates = GatesSpec(measurement_ttft_abs_ms=100, measurement_ttft_rel_pct=10, measurement_itl_rel_pct=80)
    bounds = MeasurementBounds.from_gates(gates)
    assert bounds == MeasurementBounds(100.0, 10.0, 80.0)
    assert MeasurementBounds.from_gates(GatesSpec()) == MeasurementBounds(25.0, 50.0, 50.0)
    assert cross_check(90.0, 7.0, latency(10.0, 4.0), bounds).status == AGREE
    assert MeasurementCheck.from_dict({"status": "fine"}) is None


def test_server_counts_above_and_below_the_clients_are_said() -> None:
    before = {"e2e_request_latency": Histogram(((1.0, 1.0), (INF, 1.0)), 0.5, 1.0)}
    after = {"e2e_request_latency": Histogram(((1.0, 9.0), (INF, 9.0)), 4.5, 9.0)}
    more = server_latency(before, after, client_requests=6)
    assert more.server_requests == 8 and "other traffic shared the server" in (more.note or "")
    fewer = server_latency(before, after, client_requests=10, settle_s=3.0)
    assert "the client saw 10 finish (after waiting 3.0 s)" in (fewer.note or "")
    assert server_latency(before, after, client_requests=8).note is None


@pytest.mark.slow
async def test_real_engine_histograms_count_the_steps_requests(engine_url: str) -> None:
    probe = StepLatencyProbe(f"{engine_url}/metrics")
    await probe.start()
    async with httpx.AsyncClient(base_url=engine_url, timeout=30) as client:
        for i in range(3):
            body = {"prompt": f"p{i}", "max_tokens": 5, "ignore_eos": True}
            assert (await client.post("/v1/completions", json=body)).status_code == 200
    result = await probe.finish(client_requests=3)
    assert result.reason is None and result.note is None and result.server_requests == 3
    m = result.metrics
    for name in ("time_to_first_token", "e2e_request_latency", "request_queue_time", "request_prefill_time",
                 "request_decode_time", "request_time_per_output_token"):  # fmt: skip
        assert m[name] is not None and m[name].count == 3, name
    assert m["inter_token_latency"] is not None and m["inter_token_latency"].count == 3 * 4  # 4 gaps per request
    ttft, prefill, queue = m["time_to_first_token"], m["request_prefill_time"], m["request_queue_time"]
    assert ttft.mean_ms >= queue.mean_ms + prefill.mean_ms  # TTFT also counts parsing, before the engine has it
    decode, tpot = m["request_decode_time"], m["request_time_per_output_token"]
    assert tpot.mean_ms == pytest.approx(decode.mean_ms / 4, rel=1e-6)  # decode / (5 - 1) per request, averaged
    missing = StepLatencyProbe(f"{engine_url}/nothing")
    await missing.start()
    reason = (await missing.finish(client_requests=0)).reason or ""
    assert reason.startswith(f"at the step's start: scraping {engine_url}/nothing failed: HTTP 404"), reason
