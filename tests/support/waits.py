"""Waits with a deadline: poll a predicate from a thread, from an asyncio loop, or from a Textual pilot."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable


def wait_until(predicate: Callable[[], object], deadline_s: float, interval_s: float = 0.1) -> bool:
    """Poll `predicate` until true or `deadline_s` passes; returns its last value."""
    end = time.monotonic() + deadline_s
    while time.monotonic() < end:
        if predicate():
            return True
        time.sleep(interval_s)
    return bool(predicate())


async def until(predicate: Callable[[], object], deadline_s: float, interval_s: float = 0.02) -> bool:
    """Poll `predicate` without blocking the running loop (what it waits for may run on it) until true or
    `deadline_s` passes; returns its last value."""
    end = time.monotonic() + deadline_s
    while time.monotonic() < end:
        if predicate():
            return True
        await asyncio.sleep(interval_s)
    return bool(predicate())


async def pilot_until(pilot, predicate: Callable[[], object], deadline_s: float = 30.0) -> bool:
    """Let a Textual app run (pilot.pause) until `predicate()` or `deadline_s` passes; returns its last value."""
    end = time.monotonic() + deadline_s
    while time.monotonic() < end:
        if predicate():
            return True
        await pilot.pause(0.1)
    return bool(predicate())
