"""Does a target count the tokens of every streamed chunk? One 2-token request decides it, once per target.

Asked for `stream_options: {"include_usage": true, "continuous_usage_stats": true}`, vLLM puts the
cumulative `usage` on every chunk, so the client knows how many tokens each chunk brought (several
under MTP or speculative decoding) and ITL can be per token. A server that refuses the field
(HTTP 400) or ignores it (token chunks without `usage`) is chunk-only: requests go without the
field and ITL stays per chunk. The probe has a deadline and never raises: any failure is a "no"
with its reason, so it never fails a step by itself.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import asdict, dataclass
from typing import Literal

import httpx

from engine.deadlines import timeout
from runners.replay.client import stream_request
from runners.replay.dispatch import ENDPOINT_PATHS, RequestShape, request_payload
from runners.replay.records import RequestRecord

PROBE_DEADLINE_S = 10.0
PROBE_TOKENS = 2
CLOSE_DEADLINE_S = 2.0


@dataclass(frozen=True)
class UsageProbe:
    """The probe's answer: whether requests ask for usage on every chunk, and why (for phase.json)."""

    continuous_usage: bool
    detail: str

    def as_dict(self) -> dict:
        """JSON form."""
        return asdict(self)


async def probe_continuous_usage(
    base_url: str, model: str, endpoint: Literal["chat", "completions"], deadline_s: float = PROBE_DEADLINE_S
) -> UsageProbe:
    """Send one streamed 2-token request asking for continuous usage; accepted on 200 with usage on every chunk."""
    url = base_url + ENDPOINT_PATHS[endpoint]
    shape = RequestShape(endpoint=endpoint, max_tokens=PROBE_TOKENS, continuous_usage=True, http_timeout_s=deadline_s)
    payload = request_payload(shape, model, [{"role": "user", "content": "Hi"}], PROBE_TOKENS, 0)
    rec = RequestRecord(
        index=0, endpoint=endpoint, prompt_source="usage-probe", prompt_chars=2, max_tokens=PROBE_TOKENS, scheduled_ns=0
    )
    try:
        async with timeout(deadline_s + CLOSE_DEADLINE_S), httpx.AsyncClient(timeout=deadline_s) as client:
            await stream_request(client, url, payload, deadline_s, rec, time.perf_counter_ns())
    except (TimeoutError, asyncio.TimeoutError):
        rec.fail("timeout", f"no answer within {deadline_s:g} s")
    return judge_probe(rec, url)


def judge_probe(rec: RequestRecord, url: str) -> UsageProbe:
    """The verdict on the probe request `rec` sent to `url` (pure)."""
    if rec.status == "ok" and rec.chunk_tokens is not None:
        return UsageProbe(True, f"{url} sent usage.completion_tokens on every token chunk")
    if rec.status == "ok":
        return UsageProbe(False, f"{url} ignores stream_options.continuous_usage_stats (token chunks carry no usage)")
    if rec.http_status == 400:
        return UsageProbe(False, f"{url} refuses stream_options.continuous_usage_stats: {rec.error}")
    return UsageProbe(False, f"the probe of {url} failed ({rec.status}): {rec.error}")
