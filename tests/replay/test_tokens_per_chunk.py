"""Tokens per chunk: how the client reads them from usage, the capability probe, and ITL per token end to end.

The parsing edge cases send exact SSE bodies from a one-shot loopback server (a server that misbehaves in
one precise way); everything else runs against the real mock server on loopback.
"""

from __future__ import annotations

import asyncio
import json
import ssl
import time
from typing import Literal

import httpx
import pytest

from runners.replay.client import stream_request
from runners.replay.dispatch import ENDPOINT_PATHS, Arrivals, RequestShape, request_payload
from runners.replay.metrics import itl_chunk_ms, itl_token_ms, phase_stats, tpot_ms
from runners.replay.prompts import builtin_conversations
from runners.replay.records import RequestRecord
from runners.replay.transport import replay_transport
from runners.replay.usage_probe import probe_continuous_usage
from runners.testbed.mock_server import MODEL_ID, MockSettings
from tests.support.mock import StartMock
from tests.support.processes import HOST, free_port
from tests.support.records import NS_PER_MS, request_record
from tests.support.replay import run_replay

Endpoint = Literal["chat", "completions"]


def _sse(*events: dict) -> bytes:
    return b"".join(b"data: " + json.dumps(e).encode() + b"\n\n" for e in events) + b"data: [DONE]\n\n"


def _usage(completion: int) -> dict:
    return {"prompt_tokens": 5, "completion_tokens": completion, "total_tokens": 5 + completion}


def _chunk(text: str, usage: dict | None = None, finish: str | None = None) -> dict:
    event: dict = {"choices": [{"index": 0, "delta": {"content": text}, "finish_reason": finish}]}
    if usage is not None:
        event["usage"] = usage
    return event


ROLE = {"choices": [{"index": 0, "delta": {"role": "assistant", "content": ""}, "finish_reason": None}]}


async def _parse(body: bytes) -> RequestRecord:
    """`stream_request` against a loopback server that answers with `body` as an SSE stream, then closes."""

    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = await reader.readuntil(b"\r\n\r\n")
        length = next((int(line.split(b":")[1]) for line in head.split(b"\r\n")
                       if line.lower().startswith(b"content-length:")), 0)  # fmt: skip
        await reader.readexactly(length)
        writer.write(b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\nconnection: close\r\n\r\n" + body)
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(answer, HOST, 0)
    port = server.sockets[0].getsockname()[1]
    rec = request_record(prompt_chars=2, max_tokens=8)
    async with server, httpx.AsyncClient(transport=replay_transport(ssl.create_default_context())) as client:
        await stream_request(client, f"http://{HOST}:{port}/v1/chat/completions", {}, 5.0, rec, time.perf_counter_ns())
    assert rec.status == "ok", rec.error
    return rec


# --- parsing -------------------------------------------------------------------------------------------------------


async def test_cumulative_usage_steps_are_the_tokens_each_chunk_brought() -> None:
    rec = await _parse(_sse({**ROLE, "usage": _usage(0)}, _chunk("a b", _usage(2)), _chunk("c d e", _usage(5)),
                            _chunk("", _usage(5), "stop"), {"choices": [], "usage": _usage(5)}))  # fmt: skip
    assert rec.chunk_tokens == [0, 2, 3, 0]
    assert len(rec.chunk_tokens) == len(rec.chunk_ns)
    assert (rec.output_tokens, rec.output_tokens_source, rec.prompt_tokens) == (5, "usage", 5)


async def test_a_role_delta_without_usage_brings_no_tokens() -> None:
    rec = await _parse(_sse(ROLE, _chunk("a", _usage(1)), _chunk("b c", _usage(3))))
    assert rec.chunk_tokens == [0, 1, 2]


@pytest.mark.parametrize(
    ("events", "tokens", "source"),
    [
        ((ROLE, _chunk("a"), _chunk("b")), 2, "chunks"),  # no usage at all
        ((ROLE, _chunk("a"), _chunk("b c"), {"choices": [], "usage": _usage(3)}), 3, "usage"),  # usage only at the end
        ((ROLE, {**_chunk("a"), "usage": None}, {**_chunk("b"), "usage": None}, {"choices": [], "usage": _usage(2)}),
         2, "usage"),  # include_usage without continuous stats: "usage": null on every chunk
        ((_chunk("a", _usage(1)), _chunk("b"), _chunk("c", _usage(3))), 3, "usage"),  # one chunk did not say
        ((_chunk("a b", _usage(2)), _chunk("c", _usage(1))), 1, "usage"),  # a count that goes down
    ],
    ids=["no-usage", "usage-at-end", "usage-null", "gap", "decreasing"],
)  # fmt: skip
async def test_tokens_per_chunk_are_unknown_unless_every_chunk_says(
    events: tuple[dict, ...], tokens: int, source: str
) -> None:
    rec = await _parse(_sse(*events))
    assert rec.chunk_tokens is None
    assert itl_token_ms(rec) is None
    assert (rec.output_tokens, rec.output_tokens_source) == (tokens, source)


# --- the probe -----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("endpoint", ["chat", "completions"])
async def test_probe_accepts_a_server_that_counts_every_chunk(start_mock: StartMock, endpoint: Endpoint) -> None:
    url = await start_mock(MockSettings(ttft_ms=1, itl_ms=1, tokens=8, tokens_per_chunk=2))
    probe = await probe_continuous_usage(url, MODEL_ID, endpoint)
    assert probe.continuous_usage, probe.detail


@pytest.mark.parametrize(
    ("mode", "says"),
    [("ignore", "ignores stream_options.continuous_usage_stats"), ("reject", "refuses stream_options")],
)
async def test_probe_calls_a_server_that_ignores_or_refuses_the_field_chunk_only(
    start_mock: StartMock, mode: Literal["ignore", "reject"], says: str
) -> None:
    url = await start_mock(MockSettings(ttft_ms=1, itl_ms=1, tokens=8, continuous_usage=mode))
    probe = await probe_continuous_usage(url, MODEL_ID, "chat")
    assert not probe.continuous_usage
    assert says in probe.detail and url in probe.detail


@pytest.mark.serial  # a 5 s bound
async def test_probe_of_a_server_that_is_not_there_says_so_within_its_deadline() -> None:
    url = f"http://{HOST}:{free_port()}"
    started = time.monotonic()
    probe = await probe_continuous_usage(url, MODEL_ID, "completions", deadline_s=2.0)
    assert time.monotonic() - started < 5.0
    assert not probe.continuous_usage and "connection_error" in probe.detail


@pytest.mark.serial  # a 3 s bound
async def test_probe_of_a_silent_server_ends_at_its_deadline(start_mock: StartMock) -> None:
    url = await start_mock(MockSettings(ttft_ms=60_000, itl_ms=1, tokens=2))
    started = time.monotonic()
    probe = await probe_continuous_usage(url, MODEL_ID, "completions", deadline_s=0.5)
    assert time.monotonic() - started < 3.0
    assert not probe.continuous_usage and "timeout" in probe.detail


# --- end to end against the mock server ------------------------------------------------------------------------------


async def test_three_tokens_per_chunk_give_per_token_itl_a_third_of_per_chunk(start_mock: StartMock) -> None:
    url = await start_mock(MockSettings(ttft_ms=20, itl_ms=15, tokens=12, tokens_per_chunk=3))
    probe = await probe_continuous_usage(url, MODEL_ID, "completions")
    assert probe.continuous_usage, probe.detail
    shape = RequestShape(endpoint="completions", max_tokens=12, http_timeout_s=10.0, continuous_usage=True)
    outcome, _ = await run_replay(url, builtin_conversations()[:4], Arrivals(2), shape)
    stats = phase_stats(outcome.records, outcome.wall_s)
    assert stats.ok == 4 and stats.output_tokens == 4 * 12
    for rec in outcome.records:
        assert rec.chunk_tokens == [3, 3, 3, 3] and rec.output_tokens == 12 and rec.output_tokens_source == "usage"
        tpot = tpot_ms(rec)
        assert tpot == pytest.approx((rec.e2e_ns - rec.ttft_ns) / NS_PER_MS / 11)  # type: ignore[operator]
        per_token = itl_token_ms(rec) or []
        assert len(per_token) == 9 and len(itl_chunk_ms(rec)) == 3
        # the 9 per-token gaps span first to last token chunk, inside the E2EL - TTFT that TPOT divides by 11
        assert sum(per_token) <= tpot * 11 + 1e-9  # type: ignore[operator]
    assert stats.itl_basis == "per_token"
    per_token, per_chunk = stats.distributions["itl_ms"], stats.distributions["itl_chunk_ms"]
    assert (per_token.count, per_chunk.count) == (36, 12)
    assert per_token.mean == pytest.approx(per_chunk.mean / 3)  # type: ignore[operator]
    assert per_chunk.mean is not None and per_chunk.mean >= 10.0  # chunks leave every 15 ms; a late first one is less


async def test_chat_role_chunk_brings_zero_tokens_and_is_not_a_per_token_sample(start_mock: StartMock) -> None:
    url = await start_mock(MockSettings(ttft_ms=5, itl_ms=5, tokens=7, tokens_per_chunk=3))
    shape = RequestShape(endpoint="chat", max_tokens=7, http_timeout_s=10.0, continuous_usage=True)
    outcome, _ = await run_replay(url, builtin_conversations()[:1], Arrivals(1), shape)
    (rec,) = outcome.records
    assert rec.status == "ok", rec.error
    assert rec.chunk_tokens == [0, 3, 3, 1] and rec.output_tokens == 7  # the last chunk has what is left
    assert len(itl_chunk_ms(rec)) == 3 and len(itl_token_ms(rec) or []) == 4  # 7 tokens - 3 in the first chunk


@pytest.mark.parametrize("mode", ["ignore", "honour"])
async def test_a_chunk_only_replay_keeps_per_chunk_itl_and_usage_token_counts(
    start_mock: StartMock, mode: Literal["ignore", "honour"]
) -> None:
    # "ignore": a server without continuous usage; "honour": the request did not ask for it (probe said no)
    url = await start_mock(MockSettings(ttft_ms=5, itl_ms=5, tokens=12, tokens_per_chunk=3, continuous_usage=mode))
    shape = RequestShape(endpoint="completions", max_tokens=12, http_timeout_s=10.0, continuous_usage=mode == "ignore")
    outcome, _ = await run_replay(url, builtin_conversations()[:2], Arrivals(2), shape)
    stats = phase_stats(outcome.records, outcome.wall_s)
    assert stats.ok == 2 and all(r.chunk_tokens is None and r.output_tokens == 12 for r in outcome.records)
    assert stats.itl_basis == "per_chunk"
    assert stats.distributions["itl_ms"] == stats.distributions["itl_chunk_ms"]
    assert stats.distributions["itl_ms"].count == 2 * 3


async def test_a_server_that_refuses_the_field_fails_requests_that_carry_it(start_mock: StartMock) -> None:
    """Why the probe decides once per target: sent blindly, the field costs every request on such a server."""
    url = await start_mock(MockSettings(ttft_ms=1, itl_ms=1, tokens=4, continuous_usage="reject"))
    payload = request_payload(RequestShape("completions", 4, continuous_usage=True), MODEL_ID,
                              [{"role": "user", "content": "hi"}], 4, 0)  # fmt: skip
    assert payload["stream_options"] == {"include_usage": True, "continuous_usage_stats": True}
    rec = request_record(endpoint="completions", prompt_chars=2, max_tokens=8)
    async with httpx.AsyncClient(transport=replay_transport(ssl.create_default_context())) as client:
        await stream_request(client, url + ENDPOINT_PATHS["completions"], payload, 5.0, rec, time.perf_counter_ns())
    assert (rec.status, rec.http_status) == ("http_error", 400)
    assert "continuous_usage_stats" in (rec.error or "")
