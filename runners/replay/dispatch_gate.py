"""Pause and continue dispatch: while the gate is closed no new request starts; requests in flight finish.

The gate keeps every interval it was closed (perf_counter_ns, the clock of request records), so the
runner can say exactly when a step was paused: the wall time a gate reads leaves out the part of a
pause when nothing ran, requests in flight during a pause are marked (their latency is not the
plan's load), and an open-loop schedule resumes where it left off instead of firing every arrival
that fell due during the pause at once.

The stall watch (`runners.soak.stall_watch`) holds dispatch with a gate of its own, one per step, closed
while it suspects a stall: dispatch waits on both (`wait_all_open`), but a hold is not a pause. Its time is
the engine's, so it stays in the step's wall time, its deadline and each request's dispatch lag, and the
requests in flight during it are not marked.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence

NS_PER_S = 1_000_000_000


class DispatchGate:
    """Open (dispatching) or closed (paused), with every interval spent closed."""

    def __init__(self) -> None:
        self._open = asyncio.Event()
        self._open.set()
        self._closed_at: int | None = None  # perf_counter_ns of the pause in progress
        self._intervals: list[tuple[int, int]] = []  # finished pauses, perf_counter_ns

    @property
    def paused(self) -> bool:
        """True while closed."""
        return not self._open.is_set()

    def pause(self) -> bool:
        """Close the gate; False when it already was."""
        if self.paused:
            return False
        self._closed_at = time.perf_counter_ns()
        self._open.clear()
        return True

    def resume(self) -> float | None:
        """Open the gate; returns how long this pause lasted in seconds (None when it was not paused)."""
        if not self.paused or self._closed_at is None:
            return None
        opened = time.perf_counter_ns()
        self._intervals.append((self._closed_at, opened))
        self._closed_at = None
        self._open.set()
        return (opened - self._intervals[-1][0]) / NS_PER_S

    def paused_s(self, since_ns: int | None = None) -> float:
        """Seconds closed so far (since `since_ns` when given), the current pause included."""
        now = time.perf_counter_ns()
        start = since_ns if since_ns is not None else 0
        return sum(max(0, b - max(a, start)) for a, b in self.intervals_ns(now)) / NS_PER_S

    def intervals_ns(self, until_ns: int | None = None) -> list[tuple[int, int]]:
        """Every pause as (closed, opened) perf_counter_ns; the one in progress ends at `until_ns` (default now)."""
        out = list(self._intervals)
        if self._closed_at is not None:
            out.append((self._closed_at, until_ns if until_ns is not None else time.perf_counter_ns()))
        return out

    def window(self, start_ns: int, end_ns: int) -> tuple[tuple[float, float], ...]:
        """The pauses that fell in [start_ns, end_ns], clipped to it, in seconds from `start_ns`."""
        return tuple(
            ((max(a, start_ns) - start_ns) / NS_PER_S, (min(b, end_ns) - start_ns) / NS_PER_S)
            for a, b in self.intervals_ns(end_ns)
            if b > start_ns and a < end_ns
        )

    def overlaps(self, start_ns: int, end_ns: int) -> bool:
        """True when the gate was closed at some moment strictly inside (start_ns, end_ns)."""
        return any(a < end_ns and b > start_ns for a, b in self.intervals_ns(end_ns))

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


async def wait_all_open(gates: Sequence[DispatchGate], abort: asyncio.Event) -> None:
    """Return once every gate is open at the same moment, or `abort` is set.

    Each pass waits for a closed gate to open, so the passes are bounded by the gates' openings.
    """
    while not abort.is_set():
        closed = next((gate for gate in gates if gate.paused), None)
        if closed is None:
            return
        await closed.wait_open(abort)
