"""The replay client against real loopback servers: the mock's wire format and faults, the real engine."""

from __future__ import annotations

import asyncio
import itertools
import ssl
import time
from typing import Literal

import httpx
import pytest

from runners.replay.client import stream_request
from runners.replay.dispatch import ENDPOINT_PATHS, Arrivals, RequestShape, request_payload
from runners.replay.metrics import Slo, dispatch_lag_ms, meets_slo, phase_stats, ttft_ms
from runners.replay.prompts import Conversation, Turn, builtin_conversations
from runners.replay.records import RequestRecord
from runners.replay.transport import replay_transport
from runners.testbed.mock_server import MODEL_ID, Fault, MockSettings
from tests.support.mock import StartMock
from tests.support.processes import HOST, free_port
from tests.support.records import NS_PER_MS, request_record
from tests.support.replay import run_replay

Endpoint = Literal["chat", "completions"]


async def stream_once(
    base_url: str, endpoint: Endpoint, usage: bool = True, keep_text: bool = False, max_tokens: int = 8
) -> RequestRecord:
    """One request through `stream_request` on the replay transport; the payload is the replay's own."""
    payload = request_payload(
        RequestShape(endpoint=endpoint, max_tokens=max_tokens),
        MODEL_ID,
        [{"role": "user", "content": "hi"}],
        max_tokens,
        0,
    )
    if not usage:
        del payload["stream_options"]
    rec = request_record(endpoint=endpoint, prompt_source="test", prompt_chars=2, max_tokens=8)
    async with httpx.AsyncClient(transport=replay_transport(ssl.create_default_context())) as client:
        await stream_request(
            client, base_url + ENDPOINT_PATHS[endpoint], payload, 10.0, rec, time.perf_counter_ns(), keep_text
        )
    return rec


# --- 1. the wire format ---------------------------------------------------------------------------------------------


async def test_chat_stream_with_usage_counts_every_chunk_with_choices(start_mock: StartMock) -> None:
    url = await start_mock(MockSettings(ttft_ms=20, itl_ms=5, tokens=8))
    rec = await stream_once(url, "chat")
    assert rec.status == "ok", rec.error
    assert rec.http_status == 200
    assert rec.ttft_ns is not None and rec.ttft_ns >= 20 * NS_PER_MS
    assert rec.output_tokens == 8 and rec.output_tokens_source == "usage" and rec.prompt_tokens == 8
    assert rec.finish_reason == "length"
    assert rec.output_chars == len("tok " * 8)
    # vLLM's rule (bench serve): every chunk with non-empty `choices` counts for TTFT and ITL, the
    # role-only first delta included, so TTFT is the role chunk's arrival and chunk_ns has the role
    # chunk plus one per token; the trailing usage chunk (empty `choices`) is not a chunk here.
    assert len(rec.chunk_ns) == 9
    assert rec.chunk_ns[0] == rec.ttft_ns
    assert rec.chunk_ns == sorted(rec.chunk_ns)
    # tokens leave the server at >= TTFT + k * ITL after it got the request, which is after the send
    assert rec.chunk_ns[-1] >= (20 + 7 * 5) * NS_PER_MS
    assert rec.e2e_ns is not None and rec.e2e_ns >= rec.chunk_ns[-1]
    assert ttft_ms(rec) is not None and ttft_ms(rec) >= 20
    assert meets_slo(rec, Slo(ttft_ms=10_000)) and not meets_slo(rec, Slo(ttft_ms=1))


async def test_chat_stream_without_usage_counts_token_chunks_not_the_role_chunk(start_mock: StartMock) -> None:
    url = await start_mock(MockSettings(ttft_ms=20, itl_ms=5, tokens=8))
    rec = await stream_once(url, "chat", usage=False)
    assert rec.status == "ok", rec.error
    assert rec.output_tokens == 8 and rec.output_tokens_source == "chunks"
    assert rec.prompt_tokens is None
    assert len(rec.chunk_ns) == 9  # timing still counts the role chunk; the token count does not
    assert rec.finish_reason == "length"


@pytest.mark.parametrize("usage", [True, False], ids=["usage", "no-usage"])
async def test_completions_stream_has_one_chunk_per_token(start_mock: StartMock, usage: bool) -> None:
    url = await start_mock(MockSettings(ttft_ms=20, itl_ms=5, tokens=8))
    rec = await stream_once(url, "completions", usage=usage)
    assert rec.status == "ok", rec.error
    assert rec.ttft_ns is not None and rec.ttft_ns >= 20 * NS_PER_MS
    assert len(rec.chunk_ns) == 8  # no role chunk on /v1/completions
    assert rec.output_tokens == 8
    assert rec.output_tokens_source == ("usage" if usage else "chunks")
    assert rec.finish_reason == "length"


async def test_max_tokens_below_the_servers_count_is_honoured(start_mock: StartMock) -> None:
    url = await start_mock(MockSettings(ttft_ms=1, itl_ms=1, tokens=8))
    rec = await stream_once(url, "chat", max_tokens=3)
    assert rec.status == "ok" and rec.output_tokens == 3 and len(rec.chunk_ns) == 4


# --- 5. keep_text -----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("endpoint", ["chat", "completions"])
async def test_keep_text_holds_the_generated_text(start_mock: StartMock, endpoint: Endpoint) -> None:
    url = await start_mock(MockSettings(ttft_ms=1, itl_ms=1, tokens=6))
    kept = await stream_once(url, endpoint, keep_text=True)
    assert kept.status == "ok" and kept.output_text == "tok " * 6
    dropped = await stream_once(url, endpoint, keep_text=False)
    assert dropped.status == "ok" and dropped.output_text is None


async def test_replay_keep_text_shape_keeps_text_on_every_record(start_mock: StartMock) -> None:
    url = await start_mock(MockSettings(ttft_ms=1, itl_ms=1, tokens=5))
    shape = RequestShape(endpoint="completions", max_tokens=5, keep_text=True, http_timeout_s=10.0)
    outcome, _ = await run_replay(url, builtin_conversations()[:3], Arrivals(2), shape)
    assert [r.output_text for r in outcome.records] == ["tok " * 5] * 3


# --- 2, 3, 4. failures are records, never exceptions ---------------------------------------------------------------


@pytest.mark.serial  # a 10 s bound
async def test_stalled_streams_time_out_and_the_phase_goes_on(start_mock: StartMock) -> None:
    url = await start_mock(MockSettings(ttft_ms=10, itl_ms=2, tokens=8, fault="stall", fault_every=2))
    shape = RequestShape(endpoint="chat", max_tokens=8, http_timeout_s=1.0)
    start = time.monotonic()
    outcome, seen = await run_replay(url, builtin_conversations()[:6], Arrivals(3), shape)
    elapsed = time.monotonic() - start
    assert elapsed < 10.0 and outcome.wall_s < 10.0
    assert not outcome.aborted
    assert len(outcome.records) == 6 and seen == outcome.records
    timed_out = [r for r in outcome.records if r.status == "timeout"]
    assert len(timed_out) == 3  # the server's requests 2, 4 and 6 stall
    for rec in timed_out:
        assert "deadline" in rec.error and "1 s" in rec.error
        assert rec.ttft_ns is not None and rec.e2e_ns is None  # it stalled mid-stream, after some tokens
    assert sum(r.status == "ok" for r in outcome.records) == 3
    stats = phase_stats(outcome.records, outcome.wall_s)
    assert stats.ok == 3 and stats.errors == {"timeout": 3}
    assert sorted(r.index for r in outcome.records) == list(range(6))


@pytest.mark.parametrize(
    ("fault", "status", "phrases"),
    [
        ("http500", "http_error", ("HTTP 500", "injected fault: internal server error")),
        ("garbage", "protocol_error", ("not JSON",)),
        ("eof", "protocol_error", ("without [DONE]",)),
    ],
)
async def test_server_faults_are_recorded_and_the_phase_continues(
    start_mock: StartMock, fault: Fault, status: str, phrases: tuple[str, ...]
) -> None:
    url = await start_mock(MockSettings(ttft_ms=5, itl_ms=1, tokens=8, fault=fault, fault_every=2))
    outcome, _ = await run_replay(url, builtin_conversations()[:6], Arrivals(2))
    assert len(outcome.records) == 6
    failed = [r for r in outcome.records if r.status != "ok"]
    assert len(failed) == 3, [(r.status, r.error) for r in outcome.records]
    for rec in failed:
        assert rec.status == status
        for phrase in phrases:
            assert phrase in rec.error
    if fault == "http500":
        assert all(r.http_status == 500 and url in r.error for r in failed)
    if fault == "eof":  # cut after half the tokens: no usage chunk came, so the tokens are counted from chunks
        assert all(r.output_tokens == 4 and r.output_tokens_source == "chunks" for r in failed)


async def test_connection_refused_is_a_connection_error_naming_the_url() -> None:
    base = f"http://{HOST}:{free_port()}"  # nobody listens there
    outcome, seen = await run_replay(base, builtin_conversations()[:2], Arrivals(2))
    assert len(outcome.records) == 2 and len(seen) == 2
    for rec in outcome.records:
        assert rec.status == "connection_error"
        assert base + "/v1/chat/completions" in rec.error
        assert rec.http_status is None and rec.e2e_ns is None and rec.output_tokens is None


# --- 6. open loop and dispatch lag ---------------------------------------------------------------------------------


@pytest.mark.serial  # a dispatch lag under 50 ms
async def test_open_loop_sends_on_schedule(start_mock: StartMock) -> None:
    url = await start_mock(MockSettings(ttft_ms=5, itl_ms=1, tokens=4))
    offsets = [0.0, 0.1, 0.2, 0.3]
    outcome, _ = await run_replay(url, builtin_conversations()[:4], Arrivals(concurrency=1000, offsets=offsets))
    by_index = sorted(outcome.records, key=lambda r: r.index)
    assert [r.status for r in by_index] == ["ok"] * 4
    for rec, offset in zip(by_index, offsets, strict=True):
        assert abs(rec.scheduled_ns - offset * 1e9) <= 1 * NS_PER_MS
        assert 0 <= dispatch_lag_ms(rec) < 50, (rec.index, dispatch_lag_ms(rec))


@pytest.mark.serial  # a dispatch lag under 50 ms
async def test_open_loop_at_concurrency_one_makes_coordinated_omission_visible(start_mock: StartMock) -> None:
    url = await start_mock(MockSettings(ttft_ms=100, itl_ms=1, tokens=2))
    outcome, _ = await run_replay(url, builtin_conversations()[:4], Arrivals(concurrency=1, offsets=[0, 0, 0, 0]))
    by_index = sorted(outcome.records, key=lambda r: r.index)
    assert [r.status for r in by_index] == ["ok"] * 4
    assert all(r.scheduled_ns == 0 for r in by_index)
    lags = [dispatch_lag_ms(r) for r in by_index]
    assert lags[0] < 50
    for earlier, later in itertools.pairwise(lags):
        # each request waits for the previous one, which takes at least the server's 100 ms TTFT
        assert later - earlier >= 95, lags


# --- 7. limit_requests ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("arrivals", [Arrivals(4), Arrivals(1000, offsets=[0.0] * 10)], ids=["closed", "open"])
async def test_limit_requests_sends_exactly_that_many(start_mock: StartMock, arrivals: Arrivals) -> None:
    # the server fails its 4th completion request: a 4th sent by the phase would show up as an HTTP 500
    url = await start_mock(MockSettings(ttft_ms=5, itl_ms=1, tokens=4, fault="http500", fault_every=4))
    outcome, seen = await run_replay(url, builtin_conversations()[:10], arrivals, limit_requests=3)
    assert len(outcome.records) == 3 and len(seen) == 3
    assert [r.status for r in outcome.records] == ["ok"] * 3
    after = await stream_once(url, "chat")  # the server's own count says 3 came before this one
    assert after.status == "http_error" and after.http_status == 500


# --- 8. abort ------------------------------------------------------------------------------------------------------


@pytest.mark.serial  # a 3 s bound
async def test_abort_cancels_in_flight_streams_after_the_grace(start_mock: StartMock) -> None:
    url = await start_mock(MockSettings(ttft_ms=5, itl_ms=1, tokens=8, fault="stall", fault_every=1))
    abort = asyncio.Event()
    shape = RequestShape(endpoint="chat", max_tokens=8, http_timeout_s=60.0)
    phase = asyncio.create_task(
        run_replay(url, builtin_conversations()[:6], Arrivals(3), shape, abort=abort, cancel_grace_s=0.5)
    )
    await asyncio.sleep(0.5)  # the three workers' first requests are sent in the loop's first iterations
    assert not phase.done()
    abort.set()
    aborted_at = time.monotonic()
    outcome, seen = await asyncio.wait_for(phase, 10.0)
    assert time.monotonic() - aborted_at < 3.0
    assert outcome.aborted
    assert len(outcome.records) == 3 and len(seen) == 3  # nothing is sent after the abort
    for rec in outcome.records:
        assert rec.status == "cancelled" and "stopped" in rec.error


@pytest.mark.serial  # a 3 s bound
async def test_abort_stops_an_open_loop_schedule(start_mock: StartMock) -> None:
    url = await start_mock(MockSettings(ttft_ms=5, itl_ms=1, tokens=8, fault="stall", fault_every=1))
    abort = asyncio.Event()
    shape = RequestShape(endpoint="chat", max_tokens=8, http_timeout_s=60.0)
    arrivals = Arrivals(concurrency=10, offsets=[0.0, 0.0, 30.0])
    phase = asyncio.create_task(
        run_replay(url, builtin_conversations()[:3], arrivals, shape, abort=abort, cancel_grace_s=0.5)
    )
    await asyncio.sleep(0.5)
    abort.set()
    aborted_at = time.monotonic()
    outcome, _ = await asyncio.wait_for(phase, 10.0)
    assert time.monotonic() - aborted_at < 3.0
    assert outcome.aborted
    assert sorted(r.index for r in outcome.records) == [0, 1]  # the one due at 30 s was never sent
    assert all(r.status == "cancelled" for r in outcome.records)


# --- 9. multi-turn against the real engine ----------------------------------------------------------------------


def two_turns() -> list[Conversation]:
    return [Conversation("test:two-turns", (Turn("Say hi.", "RECORDED REPLY"), Turn("And again.")))]


async def engine_model(engine_url: str) -> str:
    async with httpx.AsyncClient(timeout=10.0) as client:
        resp = await client.get(engine_url + "/v1/models")
        resp.raise_for_status()
        return str(resp.json()["data"][0]["id"])


@pytest.mark.slow
@pytest.mark.parametrize("history", ["recorded", "live"])
async def test_multi_turn_history_against_the_engine(engine_url: str, history: Literal["recorded", "live"]) -> None:
    model = await engine_model(engine_url)
    shape = RequestShape(
        endpoint="chat", max_tokens=8, temperature=0.0, seed=0, history=history, keep_text=True, http_timeout_s=60.0
    )
    outcome, _ = await run_replay(engine_url, two_turns(), Arrivals(1), shape, model=model)
    first, second = sorted(outcome.records, key=lambda r: r.turn)
    assert [first.status, second.status] == ["ok", "ok"], [first.error, second.error]
    assert (first.conversation, first.turn, first.index) == ("test:two-turns", 0, 0)
    assert (second.conversation, second.turn, second.index) == ("test:two-turns", 1, 1)
    assert first.prompt_chars == len("Say hi.")
    assert first.output_text is not None
    if history == "recorded":
        assert second.prompt_chars == len("Say hi.") + len("RECORDED REPLY") + len("And again.")
    else:
        assert first.output_text != "RECORDED REPLY"
        assert second.prompt_chars == len("Say hi.") + len(first.output_text) + len("And again.")
