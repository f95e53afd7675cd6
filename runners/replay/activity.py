"""Requests in flight and the last moment any of their streams received bytes: fed by the replay, read by
the step's stall watch (`runners.soak.stall_watch`).

A chunk is any body bytes of a streamed response (a token delta, a usage chunk, `[DONE]`); response headers
are not one (a wedged vLLM front end still sends them). The quiet clock also starts when requests go in
flight after none was, so a first request that never gets a byte counts from its send.
"""

from __future__ import annotations

import time


class StreamActivity:
    """`in_flight`: requests sent and not yet ended; `quiet_since`: monotonic time of the last chunk any of
    them received, or of the moment requests went in flight (from none), whichever is later."""

    __slots__ = ("in_flight", "quiet_since", "stopped")

    def __init__(self) -> None:
        self.in_flight = 0
        self.quiet_since = time.monotonic()
        self.stopped = False  # no new request may start (the target is being killed)

    def started(self) -> None:
        """A request is about to be sent."""
        if self.in_flight == 0:
            self.quiet_since = time.monotonic()
        self.in_flight += 1

    def ended(self) -> None:
        """A request ended, however it ended."""
        self.in_flight -= 1

    def stop(self) -> None:
        """Start no new request: the requests in flight end as the target ends them."""
        self.stopped = True

    def chunk(self) -> None:
        """A stream received bytes."""
        self.quiet_since = time.monotonic()
