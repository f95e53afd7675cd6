"""One streaming request to an OpenAI-compatible server, measured chunk by chunk; it never raises.

Every failure (connection refused, HTTP 4xx/5xx, malformed SSE, bad JSON, an error event, EOF
without `[DONE]`, the total deadline) is recorded on the RequestRecord with a reason.
"""

from __future__ import annotations

import json
import time

import httpx

from engine.deadlines import timeout
from runners.replay.records import RequestRecord
from runners.replay.sse import SSEDecoder

ERROR_BODY_LIMIT = 2048


async def stream_request(
    client: httpx.AsyncClient, url: str, payload: dict, deadline_s: float, rec: RequestRecord, phase_t0_ns: int
) -> None:
    """POST `payload` with `stream: true` to `url` and fill `rec`, all within `deadline_s` seconds.

    `asyncio` cancellation propagates (the caller records it); everything else is recorded.
    """
    sent = time.perf_counter_ns()
    rec.sent_ns, rec.sent_at = sent - phase_t0_ns, time.time()
    decoder = SSEDecoder()
    saw_done = False
    chunks_with_tokens = 0
    try:
        async with timeout(deadline_s), client.stream("POST", url, json=payload) as resp:
            rec.http_status = resp.status_code
            if resp.status_code != 200:
                body = await _read_some(resp)
                rec.fail("http_error", f"HTTP {resp.status_code} from {url}: {_error_text(body)}")
                return
            async for chunk in resp.aiter_bytes():
                now = time.perf_counter_ns() - sent
                for data in decoder.feed(chunk):
                    if data == "[DONE]":
                        saw_done = True
                        continue
                    chunks_with_tokens += _on_event(rec, data, now)
        rec.e2e_ns = time.perf_counter_ns() - sent
    except TimeoutError:
        rec.fail("timeout", f"no complete response within {deadline_s:g} s (total deadline)")
        return
    except httpx.HTTPError as exc:
        rec.fail("connection_error", f"{type(exc).__name__} talking to {url}: {exc}".rstrip(": "))
        return
    if rec.status != "ok":
        return
    if not saw_done:
        rec.fail("protocol_error", "stream ended without [DONE]" + (" (mid-event)" if decoder.pending else ""))
    elif rec.ttft_ns is None:
        rec.fail("protocol_error", "stream finished without any token chunk")
    if rec.output_tokens is None:
        rec.output_tokens, rec.output_tokens_source = chunks_with_tokens, "chunks"


def _on_event(rec: RequestRecord, data: str, now_ns: int) -> int:
    """Account for one SSE event; returns 1 when it carried a token chunk (for counting without usage)."""
    try:
        obj = json.loads(data)
    except json.JSONDecodeError:
        rec.fail("protocol_error", f"SSE data is not JSON: {data[:80]!r}")
        return 0
    if not isinstance(obj, dict):
        rec.fail("protocol_error", f"SSE data is not a JSON object: {data[:80]!r}")
        return 0
    if "error" in obj:
        err = obj["error"]
        message = err.get("message", err) if isinstance(err, dict) else err
        rec.fail("server_error", f"server sent an error event: {message}")
        return 0
    usage = obj.get("usage")
    if isinstance(usage, dict) and usage.get("completion_tokens") is not None:
        rec.output_tokens, rec.output_tokens_source = int(usage["completion_tokens"]), "usage"
        rec.prompt_tokens = usage.get("prompt_tokens")
    choices = obj.get("choices")
    if not choices:
        return 0
    if rec.ttft_ns is None:
        rec.ttft_ns = now_ns
    rec.chunk_ns.append(now_ns)
    choice = choices[0] if isinstance(choices[0], dict) else {}
    delta = choice.get("delta") or {}
    text = choice.get("text") or delta.get("content") or ""
    rec.output_chars += len(text)
    if choice.get("finish_reason"):
        rec.finish_reason = choice["finish_reason"]
    return 0 if "role" in delta else 1


async def _read_some(resp: httpx.Response) -> bytes:
    body = b""
    async for part in resp.aiter_bytes():
        body += part
        if len(body) >= ERROR_BODY_LIMIT:
            break
    return body[:ERROR_BODY_LIMIT]


def _error_text(body: bytes) -> str:
    text = body.decode("utf-8", errors="replace").strip()
    try:
        err = json.loads(text).get("error")
        if isinstance(err, dict) and err.get("message"):
            return str(err["message"])
    except (json.JSONDecodeError, AttributeError):
        pass
    return text[:300] or "(empty body)"
