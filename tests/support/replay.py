"""The replay (runners/replay/dispatch.py) as tests drive it: a chat shape by default, the records collected."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

from runners.replay.dispatch import Arrivals, ReplayOutcome, RequestShape, replay
from runners.replay.prompts import Conversation
from runners.replay.records import RequestRecord
from runners.testbed.mock_server import MODEL_ID


async def run_replay(
    base_url: str,
    conversations: Sequence[Conversation],
    arrivals: Arrivals,
    shape: RequestShape | None = None,
    abort: asyncio.Event | None = None,
    model: str = MODEL_ID,
    **kwargs,
) -> tuple[ReplayOutcome, list[RequestRecord]]:
    """`replay` with a chat shape by default; returns the outcome and what `on_record` saw."""
    seen: list[RequestRecord] = []
    outcome = await replay(
        base_url,
        model,
        conversations,
        shape or RequestShape(endpoint="chat", max_tokens=8, http_timeout_s=10.0),
        arrivals,
        seen.append,
        abort or asyncio.Event(),
        **kwargs,
    )
    return outcome, seen
