"""Pause and continue dispatch: while the gate is closed no new request starts; requests in flight finish.

The gate also keeps the total time it has been closed, so the runner can record how long a step was
paused (its wall time includes the pause) and an open-loop schedule can resume where it left off
instead of firing every arrival that fell due during the pause at once.
"""

from __future__ import annotations

import asyncio
import time


class DispatchGate:
    """Open (dispatching) or closed (paused), with the seconds spent closed."""

    def __init__(self) -> None:
        self._open = asyncio.Event()
        self._open.set()
        self._closed_at: float | None = None
        self._closed_total = 0.0

    @property
    def paused(self) -> bool:
        """True while closed."""
        return not self._open.is_set()

    def pause(self) -> bool:
        """Close the gate; False when it already was."""
        if self.paused:
            return False
        self._closed_at = time.monotonic()
        self._open.clear()
        return True

    def resume(self) -> float | None:
        """Open the gate; returns how long this pause lasted (None when it was not paused)."""
        if not self.paused or self._closed_at is None:
            return None
        lasted = time.monotonic() - self._closed_at
        self._closed_total += lasted
        self._closed_at = None
        self._open.set()
        return lasted

    def paused_s(self) -> float:
        """Total seconds closed so far, the current pause included."""
        current = time.monotonic() - self._closed_at if self._closed_at is not None else 0.0
        return self._closed_total + current

    async def wait_open(self, abort: asyncio.Event) -> None:
        """Return once the gate is open or `abort` is set."""
        if self._open.is_set() or abort.is_set():
            return
        opened, aborted = asyncio.create_task(self._open.wait()), asyncio.create_task(abort.wait())
        try:
            await asyncio.wait({opened, aborted}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            opened.cancel()
            aborted.cancel()
