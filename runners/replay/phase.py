"""A fixed-concurrency replay: C workers each send their next request when their previous one ends.

In this closed loop a request's scheduled time is the moment its worker's slot became free;
dispatch lag is the gap to the actual send. On abort, dispatch stops at once and requests in
flight get `cancel_grace_s` to finish before they are cancelled and recorded as such.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable
from dataclasses import dataclass

import httpx

from runners.plan import ShareGptPhase
from runners.replay.client import stream_request
from runners.replay.prompts import Prompt
from runners.replay.records import RequestRecord

CANCEL_GRACE_S = 5.0
ENDPOINT_PATHS = {"chat": "/v1/chat/completions", "completions": "/v1/completions"}


@dataclass(frozen=True)
class ReplayOutcome:
    """Every request sent (in completion order), the phase's wall time, and whether it was aborted."""

    records: list[RequestRecord]
    wall_s: float
    aborted: bool


def request_payload(phase: ShareGptPhase, model: str, prompt: Prompt, index: int) -> dict:
    """The JSON body of request `index` of `phase`."""
    body: dict = {
        "model": model,
        "max_tokens": phase.max_tokens,
        "temperature": phase.temperature,
        "ignore_eos": phase.ignore_eos,
        "stream": True,
        "stream_options": {"include_usage": True},
    }
    if phase.seed is not None:
        body["seed"] = phase.seed + index
    if phase.endpoint == "chat":
        body["messages"] = [{"role": "user", "content": prompt.text}]
    else:
        body["prompt"] = prompt.text
    return body


async def run_fixed_concurrency(
    base_url: str,
    model: str,
    prompts: list[Prompt],
    phase: ShareGptPhase,
    on_record: Callable[[RequestRecord], None],
    abort: asyncio.Event,
    cancel_grace_s: float = CANCEL_GRACE_S,
) -> ReplayOutcome:
    """Send one request per prompt, `phase.concurrency` at a time; `on_record` sees each as it ends."""
    url = base_url + ENDPOINT_PATHS[phase.endpoint]
    records: list[RequestRecord] = []
    pending = iter(enumerate(prompts))
    limits = httpx.Limits(max_connections=None, max_keepalive_connections=None)

    def finish(rec: RequestRecord) -> None:
        records.append(rec)
        on_record(rec)

    async with httpx.AsyncClient(limits=limits, timeout=httpx.Timeout(phase.http_timeout_s)) as client:
        t0 = time.perf_counter_ns()

        async def worker() -> None:
            slot_free = t0
            for index, prompt in pending:
                if abort.is_set():
                    return
                rec = RequestRecord(
                    index=index,
                    endpoint=phase.endpoint,
                    prompt_source=prompt.source,
                    prompt_chars=len(prompt.text),
                    max_tokens=phase.max_tokens,
                    scheduled_ns=slot_free - t0,
                )
                try:
                    payload = request_payload(phase, model, prompt, index)
                    await stream_request(client, url, payload, phase.http_timeout_s, rec, t0)
                except asyncio.CancelledError:
                    rec.fail("cancelled", "phase aborted while the request was in flight")
                    finish(rec)
                    raise
                finish(rec)
                slot_free = time.perf_counter_ns()

        workers = [asyncio.create_task(worker()) for _ in range(min(phase.concurrency, len(prompts)))]
        everything = asyncio.gather(*workers)
        aborted = asyncio.create_task(abort.wait())
        try:
            await asyncio.wait({everything, aborted}, return_when=asyncio.FIRST_COMPLETED)
            if not everything.done():
                await asyncio.wait({everything}, timeout=cancel_grace_s)
        finally:
            for task in (*workers, aborted):
                task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await everything
        wall_s = (time.perf_counter_ns() - t0) / 1e9
    return ReplayOutcome(records, wall_s, abort.is_set())
