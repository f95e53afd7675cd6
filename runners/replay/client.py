"""One streaming request to an OpenAI-compatible server, measured chunk by chunk; it never raises.

Every failure (connection refused, HTTP 4xx/5xx, malformed SSE, bad JSON, an error event, EOF
without `[DONE]`, the total deadline) is recorded on the RequestRecord with a reason. The wire
format is vLLM's: a role-only first delta, chunks whose content may be empty, the finish reason on
the last token chunk, a trailing usage chunk with empty `choices`, then `data: [DONE]`. Asked for
`continuous_usage_stats`, vLLM also puts the cumulative `usage` on every chunk; its steps are the
tokens each chunk brought (several per chunk under MTP or speculative decoding).

The hot path is per chunk, so it stays small: bytes-level SSE splitting and `orjson` parsing.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

import httpx
import orjson

from engine.deadlines import timeout
from runners.replay.records import RequestRecord
from runners.replay.sse import SSEDecoder

ERROR_BODY_LIMIT = 2048
# identity: the body is read raw (no decoding layer), so ask servers not to compress the stream.
JSON_HEADERS = {"content-type": "application/json", "accept": "text/event-stream", "accept-encoding": "identity"}


async def stream_request(
    client: httpx.AsyncClient,
    url: str,
    payload: dict,
    deadline_s: float,
    rec: RequestRecord,
    phase_t0_ns: int,
    keep_text: bool = False,
    on_chunk: Callable[[], None] | None = None,
) -> None:
    """POST `payload` with `stream: true` to `url` and fill `rec`, all within `deadline_s` seconds.

    With `keep_text` the generated text is stored in `rec.output_text` (also when the request
    fails part-way, for diagnosis). `on_chunk` is called whenever body bytes arrive (the stall
    watch's clock). Cancellation is recorded as "cancelled" and propagates;
    everything else is recorded.
    """
    body = orjson.dumps(payload)
    stream = _Stream(rec, keep_text)
    sent = time.perf_counter_ns()
    rec.sent_ns, rec.sent_at = sent - phase_t0_ns, time.time()
    try:
        async with timeout(deadline_s), client.stream("POST", url, content=body, headers=JSON_HEADERS) as resp:
            rec.http_status = resp.status_code
            if resp.status_code != 200:
                text = await _read_some(resp)
                rec.fail("http_error", f"HTTP {resp.status_code} from {url}: {_error_text(text)}")
                return
            decoder = stream.decoder
            on_event = stream.on_event
            async for chunk in resp.aiter_raw():
                now = time.perf_counter_ns() - sent
                if on_chunk is not None:
                    on_chunk()
                for data in decoder.feed(chunk):
                    on_event(data, now)
        rec.e2e_ns = time.perf_counter_ns() - sent
    except asyncio.CancelledError:
        rec.fail("cancelled", "the phase was stopped while the request was in flight")
        raise
    except TimeoutError:
        rec.fail("timeout", f"no complete response within {deadline_s:g} s (total deadline)")
    except httpx.HTTPError as exc:
        rec.fail("connection_error", f"{type(exc).__name__} talking to {url}: {exc}".rstrip(": "))
    finally:
        rec.ended_ns = time.perf_counter_ns() - phase_t0_ns
        stream.close()


class _Stream:
    """Per-request parsing state: turns SSE events into fields of the record."""

    __slots__ = ("chunk_tokens", "cumulative", "decoder", "done", "rec", "text", "token_chunks")

    def __init__(self, rec: RequestRecord, keep_text: bool) -> None:
        self.rec = rec
        self.decoder = SSEDecoder()
        self.done = False
        self.token_chunks = 0
        self.cumulative = 0  # the last cumulative usage.completion_tokens seen on a chunk
        self.chunk_tokens: list[int] | None = []  # None once a chunk did not say how many tokens it brought
        self.text: list[str] | None = [] if keep_text else None

    def on_event(self, data: str, now_ns: int) -> None:
        """Account for one SSE event that arrived `now_ns` after the send."""
        rec = self.rec
        if data == "[DONE]":
            self.done = True
            return
        try:
            obj = orjson.loads(data)
        except orjson.JSONDecodeError:
            rec.fail("protocol_error", f"SSE data is not JSON: {data[:80]!r}")
            return
        if not isinstance(obj, dict):
            rec.fail("protocol_error", f"SSE data is not a JSON object: {data[:80]!r}")
            return
        if "error" in obj:
            err = obj["error"]
            message = err.get("message", err) if isinstance(err, dict) else err
            rec.fail("server_error", f"server sent an error event: {message}")
            return
        usage = obj.get("usage")
        completion = None
        if usage and isinstance(usage, dict) and isinstance(usage.get("completion_tokens"), int):
            completion = usage["completion_tokens"]
            rec.output_tokens, rec.output_tokens_source = completion, "usage"
            rec.prompt_tokens = usage.get("prompt_tokens")
        choices = obj.get("choices")
        if not choices or not isinstance(choices, list):
            return
        if rec.ttft_ns is None:
            rec.ttft_ns = now_ns
        rec.chunk_ns.append(now_ns)
        choice = choices[0] if isinstance(choices[0], dict) else {}
        delta = choice.get("delta")
        role_only = False
        if delta:
            text = delta.get("content") or ""
            role_only = "role" in delta and not text
            if "role" not in delta:
                self.token_chunks += 1
        else:
            text = choice.get("text") or ""
            self.token_chunks += 1
        if self.chunk_tokens is not None:
            self._count_tokens(completion, role_only)
        if text:
            rec.output_chars += len(text)
            if self.text is not None:
                self.text.append(text)
        if choice.get("finish_reason"):
            rec.finish_reason = choice["finish_reason"]

    def _count_tokens(self, completion: int | None, role_only: bool) -> None:
        """Note the tokens the chunk just recorded brought: its step of the cumulative count.

        A role-only delta without usage brings 0; any other chunk without usage, or a count that goes
        down, leaves the whole list unknown.
        """
        chunk_tokens = self.chunk_tokens
        assert chunk_tokens is not None
        if completion is None:
            if role_only:
                chunk_tokens.append(0)
            else:
                self.chunk_tokens = None
            return
        if completion < self.cumulative:
            self.chunk_tokens = None
            return
        chunk_tokens.append(completion - self.cumulative)
        self.cumulative = completion

    def close(self) -> None:
        """Judge the stream as a whole once it has ended (or failed)."""
        rec = self.rec
        if self.chunk_tokens and any(self.chunk_tokens):
            rec.chunk_tokens = self.chunk_tokens
        if self.text is not None:
            rec.output_text = "".join(self.text)
        if rec.status == "ok":
            if not self.done:
                cut = " (mid-event)" if self.decoder.pending else ""
                rec.fail("protocol_error", f"stream ended without [DONE]{cut}")
            elif rec.ttft_ns is None:
                rec.fail("protocol_error", "stream finished without any token chunk")
        if rec.output_tokens is None and rec.http_status == 200:
            rec.output_tokens, rec.output_tokens_source = self.token_chunks, "chunks"


async def _read_some(resp: httpx.Response) -> bytes:
    body = b""
    async for part in resp.aiter_raw():
        body += part
        if len(body) >= ERROR_BODY_LIMIT:
            break
    return body[:ERROR_BODY_LIMIT]


def _error_text(body: bytes) -> str:
    text = body.decode("utf-8", errors="replace").strip()
    try:
        err = orjson.loads(text).get("error")
        if isinstance(err, dict) and err.get("message"):
            return str(err["message"])
    except (orjson.JSONDecodeError, AttributeError):
        pass
    return text[:300] or "(empty body)"
