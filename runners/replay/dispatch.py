"""Send a workload's conversations and record every request: closed loop or on a schedule.

Closed loop: C workers, each sending its next conversation's turns as soon as its previous
request ends; a request's scheduled time is the moment its worker became free. Open loop: each
conversation starts at its offset in the schedule (constant rate, Poisson/gamma, a trace),
whether or not earlier requests have finished, with at most `max_in_flight` conversations in
flight; a turn after the first is scheduled when the previous turn ends. Either way the actual
send time is recorded too, so dispatch lag (coordinated omission) is visible.

Connections: httpx's pool scans every connection on every request, which costs more than the
request itself at a hundred streams on 2 cores, so each conversation borrows a whole client
(one keep-alive connection) from a free list instead; the number of clients is unbounded.

A stall the step's watch suspects holds dispatch (`hold`, its own gate): no request starts until it is
released; unlike a pause, the held time stays in each waiting request's dispatch lag and an open-loop
schedule is not shifted by it (the wait is the engine's).

On abort, dispatch stops at once and requests in flight get `cancel_grace_s` to finish before
they are cancelled and recorded as such.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Literal

import httpx

from runners.replay.activity import StreamActivity
from runners.replay.client import stream_request
from runners.replay.dispatch_gate import DispatchGate, wait_all_open
from runners.replay.prompts import Conversation
from runners.replay.records import RequestRecord
from runners.replay.transport import replay_transport

CANCEL_GRACE_S = 5.0
CLOSE_DEADLINE_S = 5.0
ENDPOINT_PATHS = {"chat": "/v1/chat/completions", "completions": "/v1/completions"}


@dataclass(frozen=True)
class RequestShape:
    """What every request of a phase carries besides its prompt."""

    endpoint: Literal["chat", "completions"]
    max_tokens: int
    temperature: float = 0.0
    seed: int | None = None
    ignore_eos: bool = False
    stop: tuple[str, ...] = ()
    http_timeout_s: float = 120.0
    history: Literal["recorded", "live"] = "recorded"
    keep_text: bool = False
    continuous_usage: bool = False  # ask for usage on every chunk (the target accepted it: usage_probe)


@dataclass(frozen=True)
class Arrivals:
    """Closed loop with `concurrency` workers (offsets None), or open loop at `offsets` seconds."""

    concurrency: int
    offsets: Sequence[float] | None = None


@dataclass(frozen=True)
class ReplayOutcome:
    """Every request sent (in completion order), the phase's wall time (pauses included), whether it was
    aborted, and when dispatch was paused and when a suspected stall held it: (from, to) seconds from the
    phase start, within the wall time."""

    records: list[RequestRecord]
    wall_s: float
    aborted: bool
    pauses: tuple[tuple[float, float], ...] = ()
    holds: tuple[tuple[float, float], ...] = ()


def request_payload(shape: RequestShape, model: str, messages: list[dict], max_tokens: int, index: int) -> dict:
    """The JSON body of request `index`: chat messages, or the last user message as a completion prompt."""
    body: dict = {
        "model": model,
        "max_tokens": max_tokens,
        "temperature": shape.temperature,
        "ignore_eos": shape.ignore_eos,
        "stream": True,
        "stream_options": {"include_usage": True},
    }
    if shape.continuous_usage:
        body["stream_options"]["continuous_usage_stats"] = True
    if shape.seed is not None:
        body["seed"] = shape.seed + index
    if shape.stop:
        body["stop"] = list(shape.stop)
    if shape.endpoint == "chat":
        body["messages"] = messages
    else:
        body["prompt"] = messages[-1]["content"]
    return body


@dataclass
class _ClientPool:
    """A free list of single-connection clients; `take` makes a new one when none is free."""

    timeout_s: float
    free: list[httpx.AsyncClient] = field(default_factory=list)
    every: list[httpx.AsyncClient] = field(default_factory=list)

    def take(self) -> httpx.AsyncClient:
        if self.free:
            return self.free.pop()
        client = httpx.AsyncClient(transport=replay_transport(_SSL_CONTEXT), timeout=httpx.Timeout(self.timeout_s))
        self.every.append(client)
        return client

    def give_back(self, client: httpx.AsyncClient) -> None:
        self.free.append(client)

    async def close(self) -> None:
        with contextlib.suppress(TimeoutError, httpx.HTTPError):
            await asyncio.wait_for(asyncio.gather(*(c.aclose() for c in self.every)), CLOSE_DEADLINE_S)


# One TLS context for every client: loading CA certificates costs ~35 ms a client.
_SSL_CONTEXT = ssl.create_default_context()


async def replay(
    base_url: str,
    model: str,
    conversations: Sequence[Conversation],
    shape: RequestShape,
    arrivals: Arrivals,
    on_record: Callable[[RequestRecord], None],
    abort: asyncio.Event,
    limit_requests: int | None = None,
    cancel_grace_s: float = CANCEL_GRACE_S,
    gate: DispatchGate | None = None,
    activity: StreamActivity | None = None,
    hold: DispatchGate | None = None,
) -> ReplayOutcome:
    """Send every conversation as `arrivals` says; `on_record` sees each request as it ends.

    Request numbers (and seeds: seed + number) follow the conversations' order, turn by turn, so
    they do not depend on timing. At most `limit_requests` requests are sent. While `gate` is
    closed no request starts; an open-loop schedule is shifted by the time paused; a request in
    flight while it was closed is marked `during_pause`. `activity` (the stall watch's) is told of
    every request's start and end and of every chunk; once it is stopped no request starts. While
    `hold` (the stall watch's) is closed no request starts either, but its time is not a pause.
    """
    sender = _Replay(base_url, model, conversations, shape, on_record, abort, limit_requests,
                     gate or DispatchGate(), activity, hold or DispatchGate())  # fmt: skip
    return await sender.run(arrivals, cancel_grace_s)


class _Replay:
    """One replay's state (the request numbers, the records, how many were sent, the clients, its clock)
    and its paths: the closed loop's workers, the open loop's scheduler, and a conversation's turns."""

    def __init__(
        self,
        base_url: str,
        model: str,
        conversations: Sequence[Conversation],
        shape: RequestShape,
        on_record: Callable[[RequestRecord], None],
        abort: asyncio.Event,
        limit_requests: int | None,
        gate: DispatchGate,
        activity: StreamActivity | None,
        hold: DispatchGate,
    ) -> None:
        self.url = base_url + ENDPOINT_PATHS[shape.endpoint]
        self.model, self.conversations, self.shape = model, conversations, shape
        self.on_record, self.abort, self.limit_requests = on_record, abort, limit_requests
        self.gate, self.activity, self.hold = gate, activity, hold
        self.first_index = [0]  # conversation i's first request number
        for conv in conversations:
            self.first_index.append(self.first_index[-1] + len(conv.turns))
        self.records: list[RequestRecord] = []
        self.sent = 0
        self.pool = _ClientPool(shape.http_timeout_s)
        self.t0 = time.perf_counter_ns()

    async def run(self, arrivals: Arrivals, cancel_grace_s: float) -> ReplayOutcome:
        """Dispatch until every conversation is done or, on abort, `cancel_grace_s` after it; close the clients."""
        work = self._start(arrivals)
        stop = asyncio.create_task(self.abort.wait())
        try:
            await asyncio.wait({work, stop}, return_when=asyncio.FIRST_COMPLETED)
            if not work.done():
                await asyncio.wait({work}, timeout=cancel_grace_s)
        finally:
            stop.cancel()
            work.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await work
            end = time.perf_counter_ns()
            wall_s = (end - self.t0) / 1e9
            await self.pool.close()
        return ReplayOutcome(self.records, wall_s, self.abort.is_set(), self.gate.window(self.t0, end),
                             self.hold.window(self.t0, end))  # fmt: skip

    def _start(self, arrivals: Arrivals) -> asyncio.Future:
        """The closed loop's workers (at most one per conversation), or the open loop's scheduler, started."""
        if arrivals.offsets is None:
            queue = list(reversed(range(len(self.conversations))))
            workers = min(arrivals.concurrency, len(self.conversations))
            return asyncio.gather(*(self._worker(queue) for _ in range(workers)))
        return asyncio.ensure_future(self._schedule(arrivals.offsets, arrivals.concurrency))

    def _stopped(self) -> bool:
        """No more requests: aborted, or `limit_requests` sent."""
        return self.abort.is_set() or (self.limit_requests is not None and self.sent >= self.limit_requests)

    async def _worker(self, queue: list[int]) -> None:
        """Closed loop: one client sending the queue's next conversation as soon as the last one ended."""
        client = self.pool.take()
        free_at = self.t0
        while queue and not self.abort.is_set():
            free_at = await self._converse(queue.pop(), free_at, client)
        self.pool.give_back(client)

    async def _schedule(self, offsets: Sequence[float], concurrency: int) -> None:
        """Open loop: start conversation i at offsets[i] (shifted by pauses, not by holds), at most `concurrency`
        at once."""
        room = asyncio.Semaphore(concurrency)
        tasks: set[asyncio.Task] = set()
        gate, gates, t0 = self.gate, (self.gate, self.hold), self.t0
        try:
            for i, offset in enumerate(offsets[: len(self.conversations)]):
                await wait_all_open(gates, self.abort)
                due_ns = t0 + int((offset + gate.paused_s(since_ns=t0)) * 1e9)  # a pause shifts the rest
                delay = (due_ns - time.perf_counter_ns()) / 1e9
                if delay > 0:
                    await asyncio.sleep(delay)
                await wait_all_open(gates, self.abort)
                await room.acquire()
                if self._stopped():
                    room.release()
                    break
                task = asyncio.create_task(self._scheduled(i, due_ns, room))
                tasks.add(task)
                task.add_done_callback(tasks.discard)
            if tasks:
                await asyncio.gather(*tasks)
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

    async def _scheduled(self, i: int, due_ns: int, room: asyncio.Semaphore) -> None:
        """Open loop: conversation i on a client of its own, due at `due_ns`; its place in `room` freed after."""
        try:
            client = self.pool.take()
            try:
                await self._converse(i, due_ns, client)
            finally:
                self.pool.give_back(client)
        finally:
            room.release()

    async def _converse(self, i: int, scheduled_ns: int, client: httpx.AsyncClient) -> int:
        """Send conversation i's turns in order; returns when its last request ended (ns)."""
        conv, shape, gate, activity, t0 = self.conversations[i], self.shape, self.gate, self.activity, self.t0
        history: list[dict] = []
        for turn_no, turn in enumerate(conv.turns):
            if gate.paused or self.hold.paused:
                paused_s = gate.paused_s()
                await wait_all_open((gate, self.hold), self.abort)
                if gate.paused_s() > paused_s:  # a pause is not the request's queueing delay; a hold is
                    scheduled_ns = time.perf_counter_ns()
            if self._stopped():
                break
            if activity is not None and activity.stopped:
                break
            self.sent += 1
            index = self.first_index[i] + turn_no
            messages = [*history, {"role": "user", "content": turn.user}]
            max_tokens = conv.max_tokens or shape.max_tokens
            rec = RequestRecord(
                index=index, endpoint=shape.endpoint, prompt_source=conv.source,
                prompt_chars=sum(len(m["content"]) for m in messages), max_tokens=max_tokens,
                scheduled_ns=scheduled_ns - t0, conversation=conv.source if len(conv.turns) > 1 else None,
                turn=turn_no,
            )  # fmt: skip
            payload = request_payload(shape, self.model, messages, max_tokens, index)
            live = shape.history == "live" and turn_no + 1 < len(conv.turns)
            if activity is not None:
                activity.started()
            try:
                await stream_request(client, self.url, payload, shape.http_timeout_s, rec, t0, shape.keep_text or live,
                                     activity.chunk if activity is not None else None)  # fmt: skip
            finally:
                if activity is not None:
                    activity.ended()
                ended = t0 + (rec.ended_ns if rec.ended_ns is not None else time.perf_counter_ns() - t0)
                rec.during_pause = gate.overlaps(t0 + rec.sent_ns, ended)
                self.records.append(rec)
                self.on_record(rec)
            if rec.status != "ok":
                break  # a later turn would be sent with a history the server never produced
            reply = rec.output_text if shape.history == "live" else turn.reply
            history = [*messages, {"role": "assistant", "content": reply or ""}]
            scheduled_ns = time.perf_counter_ns()
        return time.perf_counter_ns()
