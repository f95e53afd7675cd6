"""The server's latency histograms around one step: a snapshot before its replay starts and one after it
ends, waiting (bounded) for the server to record the requests the client already saw finish.

The server may record a request just after the client read its `[DONE]`, so the end snapshot is
taken again every SETTLE_POLL_S until the e2e histogram's Δcount reaches the client's finished
requests, for at most SETTLE_S. Every scrape has its own deadline; nothing here raises for the
server's faults: a failed scrape becomes the result's `reason`.
"""

from __future__ import annotations

import asyncio
import time

import httpx

from runners.replay.server_latency import ServerLatency, Snapshot, parse_histograms, server_latency, server_requests
from runners.replay.server_metrics import (
    DEFAULT_SCRAPE_DEADLINE_S,
    MetricsParseError,
    MetricsScrapeError,
    fetch_metrics_text,
)

SETTLE_S = 3.0
SETTLE_POLL_S = 0.2


async def take_snapshot(url: str, deadline_s: float = DEFAULT_SCRAPE_DEADLINE_S) -> Snapshot | str:
    """The latency histograms at `url` (a full `/metrics` URL), or why they could not be read."""
    try:
        async with httpx.AsyncClient(timeout=httpx.Timeout(deadline_s)) as client:
            text = await fetch_metrics_text(client, url, deadline_s)
        return parse_histograms(text)
    except MetricsScrapeError as exc:
        return str(exc)
    except MetricsParseError as exc:
        return f"scraping {url} failed: {exc}"


class StepLatencyProbe:
    """`start()` before a step's replay, `finish(client_requests)` after it: the step's ServerLatency."""

    def __init__(self, metrics_url: str, settle_s: float = SETTLE_S, poll_s: float = SETTLE_POLL_S) -> None:
        self.url = metrics_url
        self.settle_s = settle_s
        self.poll_s = poll_s
        self._before: Snapshot | str = "the start snapshot was not taken"

    async def start(self) -> None:
        """Take the snapshot the step's numbers are measured from."""
        self._before = await take_snapshot(self.url)

    async def finish(self, client_requests: int) -> ServerLatency:
        """Snapshot again until the server counts `client_requests` finished requests (at most `settle_s`).

        A count that went down (a restart) or a server without the e2e histogram ends the wait at once.
        """
        before = self._before
        if isinstance(before, str):
            return ServerLatency.unavailable(f"at the step's start: {before}", client_requests)
        began = time.monotonic()
        while True:
            after = await take_snapshot(self.url)
            waited = time.monotonic() - began
            if isinstance(after, str):
                return ServerLatency.unavailable(f"at the step's end: {after}", client_requests)
            served = server_requests(before, after)
            if served is None or served < 0 or served >= client_requests or waited + self.poll_s > self.settle_s:
                return server_latency(before, after, client_requests, waited)
            await asyncio.sleep(self.poll_s)
