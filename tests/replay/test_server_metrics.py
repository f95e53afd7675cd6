"""Server metrics: parsing vLLM's /metrics, counter resets, the summary, and the sampler over real HTTP."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

import httpx
import pytest

from engine.deadlines import timeout
from runners.replay.server_metrics import (
    CounterTracker,
    MetricsParseError,
    MetricsSampler,
    MetricsScrapeError,
    MetricValues,
    acceptance_rate,
    hit_rate,
    mean_acceptance_length,
    parse_metrics,
    scrape_metrics,
    summarize,
)
from tests.support.processes import free_port

# Shaped like vLLM v1 (prometheus_client exposition, two engines of one model).
VLLM_V1 = """\
# HELP vllm:num_requests_running Number of requests in model execution batches.
# TYPE vllm:num_requests_running gauge
vllm:num_requests_running{engine="0",model_name="m"} 3.0
vllm:num_requests_running{engine="1",model_name="m"} 2.0
# HELP vllm:num_requests_waiting Number of requests waiting to be processed.
# TYPE vllm:num_requests_waiting gauge
vllm:num_requests_waiting{engine="0",model_name="m"} 1.0
vllm:num_requests_waiting{engine="1",model_name="m"} 0.0
# HELP vllm:kv_cache_usage_perc KV-cache usage. 1 means 100 percent usage.
# TYPE vllm:kv_cache_usage_perc gauge
vllm:kv_cache_usage_perc{engine="0",model_name="m"} 0.25
vllm:kv_cache_usage_perc{engine="1",model_name="m"} 0.5
# HELP vllm:prefix_cache_queries_total Prefix cache queries, in terms of number of queried tokens.
# TYPE vllm:prefix_cache_queries_total counter
vllm:prefix_cache_queries_total{engine="0",model_name="m"} 4096.0
# HELP vllm:prefix_cache_hits_total Prefix cache hits, in terms of number of cached tokens.
# TYPE vllm:prefix_cache_hits_total counter
vllm:prefix_cache_hits_total{engine="0",model_name="m"} 1024.0
# HELP vllm:num_preemptions_total Cumulative number of preemption from the engine.
# TYPE vllm:num_preemptions_total counter
vllm:num_preemptions_total{engine="0",model_name="m"} 2.0
vllm:num_preemptions_total{engine="1",model_name="m"} 1.0
# HELP vllm:num_preemptions_created Cumulative number of preemption from the engine.
# TYPE vllm:num_preemptions_created gauge
vllm:num_preemptions_created{engine="0",model_name="m"} 1.7289e+09
# HELP vllm:prompt_tokens_total Number of prefill tokens processed.
# TYPE vllm:prompt_tokens_total counter
vllm:prompt_tokens_total{engine="0",model_name="m"} 1200.0
vllm:prompt_tokens_total{engine="1",model_name="m"} 800.0
# HELP vllm:generation_tokens_total Number of generation tokens processed.
# TYPE vllm:generation_tokens_total counter
vllm:generation_tokens_total{engine="0",model_name="m"} 340.0
vllm:generation_tokens_total{engine="1",model_name="m"} 160.0
# HELP vllm:request_prompt_tokens Number of prefill tokens processed.
# TYPE vllm:request_prompt_tokens histogram
vllm:request_prompt_tokens_bucket{engine="0",le="1.0",model_name="m"} 0.0
vllm:request_prompt_tokens_bucket{engine="0",le="10.0",model_name="m"} 3.0
vllm:request_prompt_tokens_bucket{engine="0",le="+Inf",model_name="m"} 12.0
vllm:request_prompt_tokens_count{engine="0",model_name="m"} 12.0
vllm:request_prompt_tokens_sum{engine="0",model_name="m"} 1200.0
# HELP vllm:time_to_first_token_seconds Histogram of time to first token in seconds.
# TYPE vllm:time_to_first_token_seconds histogram
vllm:time_to_first_token_seconds_bucket{engine="0",le="0.001",model_name="m"} 0.0
vllm:time_to_first_token_seconds_bucket{engine="0",le="+Inf",model_name="m"} 12.0
vllm:time_to_first_token_seconds_count{engine="0",model_name="m"} 12.0
vllm:time_to_first_token_seconds_sum{engine="0",model_name="m"} 1.5
"""

# Shaped like vLLM v0: one engine, the old KV-cache name, no engine label.
VLLM_V0 = """\
# HELP vllm:gpu_cache_usage_perc GPU KV-cache usage. 1 means 100 percent usage.
# TYPE vllm:gpu_cache_usage_perc gauge
vllm:gpu_cache_usage_perc{model_name="m"} 0.8
# HELP vllm:num_requests_running Number of requests currently running on GPU.
# TYPE vllm:num_requests_running gauge
vllm:num_requests_running{model_name="m"} 7.0
# HELP vllm:num_preemptions_total Cumulative number of preemption from the engine.
# TYPE vllm:num_preemptions_total counter
vllm:num_preemptions_total{model_name="m"} 4.0
"""


ABSENT_COUNTERS = {
    "prefix_cache_queries": None,
    "prefix_cache_hits": None,
    "spec_decode_num_accepted_tokens": None,
    "spec_decode_num_draft_tokens": None,
    "spec_decode_num_drafts": None,
}


def test_vllm_v1_gauges_sum_counters_sum_kv_takes_the_max() -> None:
    assert parse_metrics(VLLM_V1) == MetricValues(
        kv_cache_usage_perc=0.5,
        num_requests_running=5.0,
        num_requests_waiting=1.0,
        num_preemptions=3.0,
        prompt_tokens=2000.0,
        generation_tokens=500.0,
        prefix_cache_queries=4096.0,
        prefix_cache_hits=1024.0,
    )


def test_old_kv_name_and_absent_metrics_are_none() -> None:
    assert parse_metrics(VLLM_V0) == MetricValues(
        kv_cache_usage_perc=0.8, num_requests_running=7.0, num_preemptions=4.0
    )


def test_new_kv_name_wins_over_the_old_one() -> None:
    text = 'vllm:gpu_cache_usage_perc{model_name="m"} 0.9\nvllm:kv_cache_usage_perc{model_name="m"} 0.1\n'
    assert parse_metrics(text).kv_cache_usage_perc == 0.1


@pytest.mark.parametrize(
    "text",
    [
        "# TYPE vllm:num_preemptions_total counter\nvllm:num_preemptions_total 6\n",  # family name loses _total
        "# TYPE vllm:num_preemptions counter\nvllm:num_preemptions_total 6\n",  # TYPE without _total
        "# TYPE vllm:num_preemptions counter\nvllm:num_preemptions 6\n",  # the parser adds _total to the sample
        "vllm:num_preemptions_total 6\n",  # untyped: the family keeps _total
    ],
)
def test_preemption_counter_in_every_exposition_form(text: str) -> None:
    assert parse_metrics(text).num_preemptions == 6.0


def test_empty_body_nan_and_unrelated_metrics_are_absent() -> None:
    assert parse_metrics("") == MetricValues()
    assert (
        parse_metrics('vllm:num_requests_running{model_name="m"} NaN\nprocess_cpu_seconds_total 3\n') == MetricValues()
    )


@pytest.mark.parametrize(
    "text", ["<html><body>502 Bad Gateway</body></html>", '{"error": "no"}', "Internal Server Error"]
)
def test_garbage_raises_parse_error_quoting_the_body(text: str) -> None:
    with pytest.raises(MetricsParseError, match="not Prometheus text exposition") as info:
        parse_metrics(text)
    assert repr(text) in str(info.value)


def test_parse_error_quotes_only_the_first_80_chars() -> None:
    text = "garbage " + "x" * 200
    with pytest.raises(MetricsParseError) as info:
        parse_metrics(text)
    assert repr(text[:80]) in str(info.value) and text[:81] not in str(info.value)


def test_counter_resets_and_absences_by_hand() -> None:
    tracker = CounterTracker()
    generation = [100.0, 150.0, 30.0, 70.0, None, 90.0]
    preemptions = [5.0, 5.0, 0.0, 1.0, 1.0, 1.0]
    prompt = [None, None, 7.0, 9.0, 9.0, 12.0]
    steps = [
        tracker.update(MetricValues(generation_tokens=g, num_preemptions=p, prompt_tokens=q))
        for g, p, q in zip(generation, preemptions, prompt, strict=True)
    ]
    # 150-100; 30 < 150 is a reset so +30; 70-30; absent; 90-70 (against the last value seen).
    assert [s.increases["generation_tokens"] for s in steps] == [None, 50.0, 30.0, 40.0, None, 20.0]
    assert [s.increases["num_preemptions"] for s in steps] == [None, 0.0, 0.0, 1.0, 0.0, 0.0]
    # Missing from the first scrapes, then 7: it appeared since, so it counts from 0.
    assert [s.increases["prompt_tokens"] for s in steps] == [None, None, 7.0, 2.0, 0.0, 3.0]
    assert [s.resets for s in steps] == [(), (), ("num_preemptions", "generation_tokens"), (), (), ()]
    assert tracker.totals == {
        "num_preemptions": 1.0,
        "prompt_tokens": 12.0,
        "generation_tokens": 140.0,
        **ABSENT_COUNTERS,
    }
    assert tracker.reset_count == 2
    empty = {"num_preemptions": None, "prompt_tokens": None, "generation_tokens": None, **ABSENT_COUNTERS}
    assert CounterTracker().totals == empty


def sample(error: str | None = None, **values: float) -> dict:
    """A sampler line; `increases`/`resets` are left empty because summarize recomputes them from values."""
    full = MetricValues(**values).as_dict() if error is None else MetricValues().as_dict()
    return {"t": 0.0, "elapsed_s": 0.0, "values": full, "increases": {}, "resets": [], "error": error}


def test_summarize_by_hand() -> None:
    samples = [
        sample(kv_cache_usage_perc=0.2, num_requests_running=4, num_requests_waiting=0, generation_tokens=10),
        sample(error="scraping u failed: HTTP 500: boom"),
        sample(kv_cache_usage_perc=0.6, num_requests_running=8, num_requests_waiting=3, generation_tokens=50),
        sample(kv_cache_usage_perc=0.4, num_requests_running=2, num_requests_waiting=1, generation_tokens=20),
        sample(error="scraping u failed: ConnectError"),
    ]
    assert summarize(samples) == {
        "scrapes_ok": 3,
        "scrapes_failed": 2,
        "kv_cache_usage_perc_max": 0.6,
        "kv_cache_usage_perc_mean": pytest.approx((0.2 + 0.6 + 0.4) / 3),
        "num_requests_running_max": 8,
        "num_requests_waiting_max": 3,
        "not_sampled": {},
        "num_preemptions_increase": None,
        "prompt_tokens_increase": None,
        "generation_tokens_increase": 40.0 + 20.0,  # 10 -> 50, then a reset to 20
        **{f"{name}_increase": None for name in ABSENT_COUNTERS},
        "prefix_cache_hit_rate": None,
        "spec_decode_acceptance_rate": None,
        "spec_decode_mean_acceptance_length": None,
        "counter_resets": 1,
        "absent_metrics": ["num_preemptions", "prompt_tokens", *ABSENT_COUNTERS],
        "last_error": "scraping u failed: ConnectError",
    }


def test_prefix_cache_hit_rate_and_spec_decode_acceptance_by_hand() -> None:
    samples = [
        sample(prefix_cache_queries=1000, prefix_cache_hits=100, spec_decode_num_drafts=10,
               spec_decode_num_draft_tokens=30, spec_decode_num_accepted_tokens=12),
        sample(prefix_cache_queries=1800, prefix_cache_hits=500, spec_decode_num_drafts=50,
               spec_decode_num_draft_tokens=150, spec_decode_num_accepted_tokens=72),
        sample(prefix_cache_queries=2000, prefix_cache_hits=600, spec_decode_num_drafts=60,
               spec_decode_num_draft_tokens=180, spec_decode_num_accepted_tokens=87),
    ]  # fmt: skip
    summary = summarize(samples)
    # queries +1000, hits +500: half of the queried tokens were cached
    assert summary["prefix_cache_queries_increase"] == 1000 and summary["prefix_cache_hits_increase"] == 500
    assert summary["prefix_cache_hit_rate"] == 0.5
    # 150 draft tokens in 50 drafts (3 per step), 75 accepted: rate 75/150, each step yields 1 + 75/50 tokens
    assert summary["spec_decode_acceptance_rate"] == 0.5
    assert summary["spec_decode_mean_acceptance_length"] == 2.5
    # counters that did not move give no rate, never 0 %
    flat = summarize([sample(prefix_cache_queries=7, prefix_cache_hits=3)] * 3)
    assert flat["prefix_cache_queries_increase"] == 0.0 and flat["prefix_cache_hit_rate"] is None
    assert flat["spec_decode_acceptance_rate"] is None and "spec_decode_num_drafts" in flat["absent_metrics"]
    assert hit_rate(None, 10) is None and acceptance_rate(3, 0) is None and mean_acceptance_length(3, None) is None


def test_gauges_of_a_step_with_two_scrapes_are_not_sampled() -> None:
    two = [
        sample(kv_cache_usage_perc=0.0, num_requests_running=0, num_requests_waiting=0, generation_tokens=10),
        sample(error="scraping u failed: HTTP 500: boom"),
        sample(kv_cache_usage_perc=0.0, num_requests_running=0, num_requests_waiting=0, generation_tokens=90),
    ]
    summary = summarize(two)
    assert summary["num_requests_running_max"] is None and summary["num_requests_waiting_max"] is None
    assert summary["kv_cache_usage_perc_max"] is None and summary["kv_cache_usage_perc_mean"] is None
    assert set(summary["not_sampled"]) == {"kv_cache_usage_perc", "num_requests_running", "num_requests_waiting"}
    assert "2 ok /metrics scrape(s)" in summary["not_sampled"]["num_requests_running"]
    assert "num_requests_running" not in summary["absent_metrics"]  # it was exported, just not sampled enough
    assert summary["generation_tokens_increase"] == 80  # counters need only their ends
    # a third ok scrape makes the gauges count
    three = summarize([*two, sample(kv_cache_usage_perc=0.0029, num_requests_running=2, num_requests_waiting=0)])
    assert three["not_sampled"] == {} and three["num_requests_running_max"] == 2
    assert three["kv_cache_usage_perc_max"] == 0.0029


def test_bucket_lines_are_skipped_but_garbage_still_raises() -> None:
    buckets = "".join(
        f'vllm:e2e_request_latency_seconds_bucket{{le="{b}",model_name="m"}} 1.0\n' for b in (0.1, 1, "+Inf")
    )
    text = "# TYPE vllm:e2e_request_latency_seconds histogram\n" + buckets + VLLM_V0
    assert parse_metrics(text) == parse_metrics(VLLM_V0)
    with pytest.raises(MetricsParseError):
        parse_metrics(buckets + "<html>oops</html>\n")


def test_summarize_without_an_ok_scrape_lists_every_metric_absent() -> None:
    summary = summarize([sample(error="scraping u failed: ConnectError")])
    assert summary["scrapes_ok"] == 0 and summary["scrapes_failed"] == 1
    assert summary["absent_metrics"] == list(MetricValues().as_dict())
    assert summary["kv_cache_usage_perc_mean"] is None and summary["generation_tokens_increase"] is None
    assert summarize([])["last_error"] is None


@pytest.mark.slow
async def test_real_engine_metrics_and_generation_token_increase(engine_url: str) -> None:
    async with httpx.AsyncClient(timeout=30) as client:
        # A fresh engine has no token counters yet (a labelled counter appears at its first increment).
        before = await scrape_metrics(client, f"{engine_url}/metrics", deadline_s=5)
        model = (await client.get(f"{engine_url}/v1/models")).json()["data"][0]["id"]
        body = {"model": model, "prompt": "hi", "max_tokens": 4, "ignore_eos": True}
        resp = await client.post(f"{engine_url}/v1/completions", json=body)
        assert resp.status_code == 200, resp.text
        usage = resp.json()["usage"]
        after = await scrape_metrics(client, f"{engine_url}/metrics", deadline_s=5)
    assert after.num_requests_running is not None and after.num_requests_waiting is not None
    assert after.generation_tokens is not None and after.prompt_tokens is not None
    assert after.kv_cache_usage_perc is None and after.num_preemptions is None  # the engine exports neither
    tracker = CounterTracker()
    tracker.update(before)
    increases = tracker.update(after).increases
    assert usage["completion_tokens"] == 4
    assert increases["generation_tokens"] == 4.0
    assert increases["prompt_tokens"] == usage["prompt_tokens"]


def vllm_text(generation: float, prompt: float, running: float) -> bytes:
    """A small vLLM v1-like body."""
    return (
        "# HELP vllm:num_requests_running Running.\n# TYPE vllm:num_requests_running gauge\n"
        f'vllm:num_requests_running{{engine="0",model_name="m"}} {running}\n'
        "# HELP vllm:prompt_tokens_total Prompt.\n# TYPE vllm:prompt_tokens_total counter\n"
        f'vllm:prompt_tokens_total{{engine="0",model_name="m"}} {prompt}\n'
        "# HELP vllm:generation_tokens_total Generated.\n# TYPE vllm:generation_tokens_total counter\n"
        f'vllm:generation_tokens_total{{engine="0",model_name="m"}} {generation}\n'
    ).encode()


@asynccontextmanager
async def serve_http(respond: Callable[[int], object]) -> AsyncIterator[str]:
    """A minimal HTTP/1.1 server on loopback; `respond(n)` (sync or async) gives (status, body) for request n."""
    count = 0

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal count
        try:
            async with timeout(5):
                await reader.readuntil(b"\r\n\r\n")
                n, count = count, count + 1
                answer = respond(n)
                status, body = await answer if asyncio.iscoroutine(answer) else answer
                head = f"HTTP/1.1 {status} X\r\nContent-Type: text/plain\r\nContent-Length: {len(body)}\r\n"
                writer.write(head.encode() + b"Connection: close\r\n\r\n" + body)
                await writer.drain()
        except (TimeoutError, asyncio.TimeoutError, ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}/metrics"
    finally:
        server.close()


async def wait_for_samples(samples: list, n: int, deadline_s: float = 5.0) -> None:
    """Poll until `samples` has `n` entries or fail at the deadline."""
    end = time.monotonic() + deadline_s
    while len(samples) < n:
        assert time.monotonic() < end, f"only {len(samples)} samples within {deadline_s} s"
        await asyncio.sleep(0.02)


@pytest.mark.serial  # a 1 s bound
async def test_sampler_records_values_reset_garbage_and_http_errors_and_stops_promptly() -> None:
    script = [
        (200, vllm_text(generation=10, prompt=20, running=2)),
        (200, vllm_text(generation=15, prompt=30, running=3)),
        (200, vllm_text(generation=4, prompt=35, running=1)),  # generation_tokens went down: a restart
        (200, b"<html>not metrics</html>"),
        (500, b"boom"),
    ]
    samples: list[dict] = []
    async with serve_http(lambda n: script[min(n, len(script) - 1)]) as url:
        sampler = MetricsSampler(url, samples.append, interval_s=0.05, deadline_s=0.5)
        stop = asyncio.Event()
        task = asyncio.create_task(sampler.run(stop))
        await wait_for_samples(samples, 7)
        stop.set()
        stopped = time.monotonic()
        async with timeout(2):
            await task
        assert time.monotonic() - stopped < 1.0
    json.dumps(samples, allow_nan=False)  # every line is plain JSON
    assert all(set(s) == {"t", "elapsed_s", "values", "increases", "resets", "error"} for s in samples)
    first, second, reset, garbage, http_500 = samples[:5]
    assert first["error"] is None and first["values"]["num_requests_running"] == 2.0
    assert first["values"]["kv_cache_usage_perc"] is None and first["increases"]["generation_tokens"] is None
    assert second["increases"] == {
        "num_preemptions": None,
        "prompt_tokens": 10.0,
        "generation_tokens": 5.0,
        **ABSENT_COUNTERS,
    }
    assert reset["resets"] == ["generation_tokens"] and reset["increases"]["generation_tokens"] == 4.0
    assert url in garbage["error"] and "not Prometheus text exposition" in garbage["error"]
    assert garbage["values"] == MetricValues().as_dict() and garbage["resets"] == []
    assert "HTTP 500: boom" in http_500["error"]
    assert [s["elapsed_s"] for s in samples] == sorted(s["elapsed_s"] for s in samples)
    summary = summarize(samples)
    assert summary["scrapes_ok"] == 3 and summary["scrapes_failed"] == len(samples) - 3
    assert summary["generation_tokens_increase"] == 5.0 + 4.0 and summary["prompt_tokens_increase"] == 15.0
    assert summary["counter_resets"] == 1 and summary["num_requests_running_max"] == 3.0
    assert "HTTP 500" in summary["last_error"]


@pytest.mark.serial  # a 1 s bound
async def test_sampler_stops_within_the_deadline_while_a_scrape_hangs() -> None:
    got_request, release = asyncio.Event(), asyncio.Event()

    async def hang(_: int) -> tuple[int, bytes]:
        got_request.set()
        async with timeout(5):
            await release.wait()
        return 200, b""

    samples: list[dict] = []
    async with serve_http(hang) as url:
        stop = asyncio.Event()
        task = asyncio.create_task(MetricsSampler(url, samples.append, deadline_s=0.3).run(stop))
        async with timeout(5):
            await got_request.wait()
        stop.set()
        stopped = time.monotonic()
        async with timeout(2):
            await task
        assert time.monotonic() - stopped < 1.0
        release.set()
    assert len(samples) == 1 and "no complete response within 0.3 s" in samples[0]["error"]


async def test_dead_server_gives_error_samples_and_a_preset_stop_takes_one_scrape() -> None:
    url = f"http://127.0.0.1:{free_port()}/metrics"
    samples: list[dict] = []
    stop = asyncio.Event()
    stop.set()
    async with timeout(5):
        await MetricsSampler(url, samples.append, deadline_s=0.5).run(stop)
    assert len(samples) == 1
    assert samples[0]["error"].startswith(f"scraping {url} failed: ConnectError")
    with pytest.raises(MetricsScrapeError, match="ConnectError"):
        async with httpx.AsyncClient() as client:
            await scrape_metrics(client, url, deadline_s=0.5)
