"""A fast loopback OpenAI-compatible streaming server with injected delays and faults.

It speaks just enough HTTP/1.1 (keep-alive, Content-Length bodies, chunked responses) on raw
asyncio protocols so that, on 2 cores, the server is never the bottleneck of a client benchmark.
Streams follow vLLM's wire format: a role-only first delta (chat), one chunk per
`tokens_per_chunk` tokens (1 by default; more is what MTP and speculative decoding send), the
finish reason on the last token chunk, a trailing usage chunk with empty `choices` when asked
for, then `data: [DONE]`. With `stream_options.continuous_usage_stats` (and `include_usage`) every
chunk also carries the cumulative usage, as vLLM does (0 completion tokens on the role delta);
`continuous_usage` = "ignore" or "reject" plays a server that ignores the field or answers 400.
Chunks arrive at send + TTFT, then every ITL (the gap between chunks, whatever they carry), on an
absolute schedule so a late tick does not push the rest back.

Faults (every `fault_every`-th request, counting from 1) rehearse what a real server does wrong:
`http500`, `garbage` (non-JSON SSE data), `stall` (stops after half the tokens and never ends),
`eof` (closes the connection after half the tokens without `[DONE]`).

With `region_timing` it plays a target built with region timers (as nvllm's `/tmp/.dump_region_timings`):
a completion request that finds the trigger file writes `synthetic_region_ticks` to the output `.npy`
(temp file, then rename) and removes the trigger.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import os
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Literal

if TYPE_CHECKING:
    import numpy as np

Fault = Literal["none", "http500", "garbage", "stall", "eof"]
ContinuousUsage = Literal["honour", "ignore", "reject"]
MODEL_ID = "mock"
MAX_HEADER_BYTES = 64 * 1024
MAX_BODY_BYTES = 16 * 1024 * 1024


@dataclass(frozen=True)
class RegionTimingMock:
    """Region timers: a completion that finds `trigger` writes a [ctas, regions, 2] dump to `output`."""

    trigger: str
    output: str
    ctas: int = 8
    regions: int = 3


def synthetic_region_ticks(ctas: int, regions: int) -> np.ndarray:
    """A deterministic int64 [ctas, regions, 2] start/end tick buffer.

    Region r < regions − 1 of CTA c starts at 1000·r + 3·c and lasts 100·(r + 1) + c ticks (every CTA runs it);
    the last region (with two or more) runs on CTA 0 alone, from 1000·(regions − 1) for 100·regions ticks.
    """
    import numpy as np  # only a mock with region timers needs it

    ticks = np.zeros((ctas, regions, 2), dtype=np.int64)
    shared = regions - 1 if regions > 1 else regions
    for c in range(ctas):
        for r in range(shared):
            start = 1000 * r + 3 * c
            ticks[c, r] = (start, start + 100 * (r + 1) + c)
    if regions > 1:
        start = 1000 * (regions - 1)
        ticks[0, regions - 1] = (start, start + 100 * regions)
    return ticks


def dump_region_timing(mock: RegionTimingMock) -> bool:
    """Write the synthetic dump when the trigger exists (then remove the trigger); whether it wrote one."""
    import numpy as np

    if not os.path.exists(mock.trigger):
        return False
    output = Path(mock.output)
    tmp = output.with_name(f".{output.name}.tmp-{os.getpid()}")
    with open(tmp, "wb") as fh:
        np.save(fh, synthetic_region_ticks(mock.ctas, mock.regions), allow_pickle=False)
    os.replace(tmp, output)
    with contextlib.suppress(FileNotFoundError):
        os.unlink(mock.trigger)
    return True


@dataclass(frozen=True)
class MockSettings:
    """How the mock server answers: delays in ms, tokens per response and per chunk, and an optional fault."""

    ttft_ms: float = 50.0
    itl_ms: float = 10.0  # between chunks
    tokens: int = 64
    fault: Fault = "none"
    fault_every: int = 1
    health_fail_after: int = 0  # /health answers 503 from this probe on (0: always 200)
    tokens_per_chunk: int = 1
    continuous_usage: ContinuousUsage = "honour"  # what it does with stream_options.continuous_usage_stats
    region_timing: RegionTimingMock | None = None


class _Connection(asyncio.Protocol):
    """One keep-alive HTTP/1.1 connection; requests are answered one at a time, in order."""

    def __init__(self, settings: MockSettings, numbers: Iterator[int], probes: Iterator[int]) -> None:
        self.settings = settings
        self.numbers = numbers
        self.probes = probes
        self.loop = asyncio.get_running_loop()
        self.transport: asyncio.Transport | None = None
        self.buffer = b""
        self.busy = False
        self.timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def connection_lost(self, exc: Exception | None) -> None:
        if self.timer is not None:
            self.timer.cancel()
        self.transport = None

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        self._next_request()

    def _next_request(self) -> None:
        if self.busy or self.transport is None:
            return
        head_end = self.buffer.find(b"\r\n\r\n")
        if head_end < 0:
            if len(self.buffer) > MAX_HEADER_BYTES:
                self._simple(431, {"error": {"message": "request headers too large"}}, close=True)
            return
        lines = self.buffer[:head_end].decode("latin-1").split("\r\n")
        try:
            method, path, _version = lines[0].split(" ", 2)
        except ValueError:
            self._simple(400, {"error": {"message": "malformed request line"}}, close=True)
            return
        headers = {}
        for line in lines[1:]:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
        length = int(headers.get("content-length", "0") or 0)
        if length > MAX_BODY_BYTES:
            self._simple(413, {"error": {"message": "request body too large"}}, close=True)
            return
        if len(self.buffer) < head_end + 4 + length:
            return
        body = self.buffer[head_end + 4 : head_end + 4 + length]
        self.buffer = self.buffer[head_end + 4 + length :]
        self._route(method, path.split("?", 1)[0], body)

    def _route(self, method: str, path: str, body: bytes) -> None:
        if method == "GET" and path == "/health":
            if 0 < self.settings.health_fail_after <= next(self.probes):
                self._simple(503, {"error": {"message": "injected fault: unhealthy"}})
            else:
                self._simple(200, {})
        elif method == "GET" and path == "/v1/models":
            self._simple(200, {"object": "list", "data": [{"id": MODEL_ID, "object": "model", "owned_by": "mock"}]})
        elif method == "POST" and path in ("/v1/chat/completions", "/v1/completions"):
            try:
                request = json.loads(body or b"{}")
            except json.JSONDecodeError:
                self._simple(400, {"error": {"message": "request body is not JSON"}})
                return
            self._completion(path.endswith("chat/completions"), request if isinstance(request, dict) else {})
        else:
            self._simple(404, {"error": {"message": f"no route {method} {path}"}})

    def _simple(self, status: int, payload: dict, close: bool = False) -> None:
        assert self.transport is not None
        body = json.dumps(payload).encode()
        reason = {200: "OK", 400: "Bad Request", 404: "Not Found", 413: "Too Large", 431: "Too Large"}.get(
            status, "Error"
        )
        self.transport.write(
            f"HTTP/1.1 {status} {reason}\r\ncontent-type: application/json\r\ncontent-length: {len(body)}\r\n"
            f"{'connection: close' if close else 'connection: keep-alive'}\r\n\r\n".encode()
            + body
        )
        if close:
            self.transport.close()

    def _completion(self, chat: bool, request: dict) -> None:
        s = self.settings
        n = next(self.numbers)
        if s.region_timing is not None:
            dump_region_timing(s.region_timing)
        fault = s.fault if s.fault != "none" and n % s.fault_every == 0 else "none"
        if fault == "http500":
            self._simple(500, {"error": {"message": "injected fault: internal server error", "code": 500}})
            return
        tokens = int(request.get("max_tokens") or s.tokens)
        tokens = max(1, min(tokens, s.tokens))
        if not request.get("stream"):
            text = "tok " * tokens
            choice = {"index": 0, "finish_reason": "length"}
            choice |= {"message": {"role": "assistant", "content": text}} if chat else {"text": text}
            usage = {"prompt_tokens": 8, "completion_tokens": tokens, "total_tokens": 8 + tokens}
            answer = {"id": f"cmpl-{n}", "object": "x", "model": MODEL_ID, "choices": [choice], "usage": usage}
            self._simple(200, answer)
            return
        options = request.get("stream_options") or {}
        continuous = bool(options.get("continuous_usage_stats")) if isinstance(options, dict) else False
        if continuous and s.continuous_usage == "reject":
            self._simple(400, {"error": {"message": "stream_options: unknown field continuous_usage_stats"}})
            return
        usage = bool(options.get("include_usage")) if isinstance(options, dict) else False
        continuous = continuous and usage and s.continuous_usage == "honour"
        stream = _Stream(chat, n, tokens, max(1, s.tokens_per_chunk), usage, continuous, fault)
        assert self.transport is not None
        self.transport.write(
            b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ncache-control: no-cache\r\n"
            b"transfer-encoding: chunked\r\nconnection: keep-alive\r\n\r\n"
        )
        self.busy = True
        start = self.loop.time()
        self.timer = self.loop.call_at(start + self.settings.ttft_ms / 1000.0, self._tick, stream, start, 0)

    def _tick(self, stream: _Stream, start: float, chunk: int) -> None:
        """Send chunk number `chunk` (from 0) of `stream` and schedule the next one."""
        transport = self.transport
        if transport is None:
            return
        s = self.settings
        sent = min(chunk * stream.per_chunk, stream.tokens)  # tokens already sent
        if stream.fault in ("stall", "eof") and sent >= max(1, stream.tokens // 2):
            if stream.fault == "eof":
                transport.write(b"0\r\n\r\n")
                transport.close()
            return  # stall: keep the connection open and say nothing more
        frames = []
        if chunk == 0 and stream.chat:
            frames.append(stream.role_chunk())
        now_sent = min(sent + stream.per_chunk, stream.tokens)
        frames.append(stream.token_chunk(now_sent - sent, now_sent))
        if stream.fault == "garbage" and chunk == 1:
            frames = [b"data: {not json at all\n\n"]
        last = now_sent == stream.tokens
        if last:
            if stream.usage:
                frames.append(stream.usage_chunk())
            frames.append(b"data: [DONE]\n\n")
        transport.write(b"".join(_chunked(f) for f in frames) + (b"0\r\n\r\n" if last else b""))
        if last:
            self.busy = False
            self.timer = None
            if self.buffer:
                self._next_request()
            return
        due = start + (s.ttft_ms + (chunk + 1) * s.itl_ms) / 1000.0
        self.timer = self.loop.call_at(due, self._tick, stream, start, chunk + 1)


class _Stream:
    """The SSE frames of one streamed response (pre-encoded where every chunk is alike)."""

    def __init__(self, chat: bool, n: int, tokens: int, per_chunk: int, usage: bool, continuous: bool,
                 fault: Fault) -> None:  # fmt: skip
        self.chat, self.tokens, self.per_chunk, self.fault = chat, tokens, per_chunk, fault
        self.usage, self.continuous = usage, continuous
        self.head = {"id": f"cmpl-{n}", "object": "chat.completion.chunk" if chat else "text_completion",
                     "created": int(time.time()), "model": MODEL_ID}  # fmt: skip
        self.plain = self._frame(self._choice("tok " * per_chunk, None))

    def _choice(self, text: str, finish: str | None) -> dict:
        if self.chat:
            return {"index": 0, "delta": {"content": text}, "logprobs": None, "finish_reason": finish}
        return {"index": 0, "text": text, "logprobs": None, "finish_reason": finish}

    def _frame(self, choice: dict | None, usage: dict | None = None) -> bytes:
        obj = self.head | {"choices": [choice] if choice else []}
        if usage is not None:
            obj["usage"] = usage
        return b"data: " + json.dumps(obj, separators=(",", ":")).encode() + b"\n\n"

    def _usage(self, completion_tokens: int) -> dict:
        return {"prompt_tokens": 8, "completion_tokens": completion_tokens, "total_tokens": 8 + completion_tokens}

    def role_chunk(self) -> bytes:
        """The role-only first delta vLLM sends on chat streams (with 0 completion tokens when continuous)."""
        role = {"index": 0, "delta": {"role": "assistant", "content": ""}, "finish_reason": None}
        return self._frame(role, self._usage(0) if self.continuous else None)

    def token_chunk(self, count: int, total: int) -> bytes:
        """`count` tokens, `total` sent so far; the last chunk carries finish_reason "length"."""
        last = total == self.tokens
        if not last and count == self.per_chunk and not self.continuous:
            return self.plain
        return self._frame(self._choice("tok " * count, "length" if last else None),
                           self._usage(total) if self.continuous else None)  # fmt: skip

    def usage_chunk(self) -> bytes:
        """The trailing usage chunk (`stream_options.include_usage`)."""
        return self._frame(None, self._usage(self.tokens))


def _chunked(frame: bytes) -> bytes:
    return b"%x\r\n%s\r\n" % (len(frame), frame)


async def serve_mock(host: str, port: int, settings: MockSettings, ready: asyncio.Event | None = None) -> None:
    """Serve until cancelled; `ready` is set once the socket listens."""
    numbers, probes = itertools.count(1), itertools.count(1)
    loop = asyncio.get_running_loop()
    server = await loop.create_server(lambda: _Connection(settings, numbers, probes), host, port, backlog=4096)
    if ready is not None:
        ready.set()
    async with server:
        await server.serve_forever()
