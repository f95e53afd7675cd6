"""`events.jsonl`: append-only typed events, one JSON object per line with `v`, `t` and `type`.

Every event type and its fields are listed in docs/architecture.md. Readers ignore fields and
types they do not know, so adding either is backwards compatible; renaming or removing one bumps
EVENT_SCHEMA.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

from runners.run.files import JsonlWriter

EVENT_SCHEMA = 1

# Events worth an fsync: losing them would misreport where a run stands.
DURABLE = frozenset(
    {
        "run_started",
        "run_finished",
        "step_finished",
        "step_failed",
        "step_aborted",
        "dispatch_paused",
        "dispatch_resumed",
        "serve_failed",
        "env_mismatch",
        "kernel_checks_failed",
        "watchdog_action",
        "guard_lost",
        "guard_ended_target",
    }
)

Listener = Callable[[dict], None]


class EventLog:
    """Writes events to events.jsonl and hands each one to in-process listeners."""

    def __init__(self, path: Path) -> None:
        self._writer = JsonlWriter(path)
        self._listeners: list[Listener] = []

    def subscribe(self, listener: Listener) -> None:
        """Call `listener(event)` after every event is written."""
        self._listeners.append(listener)

    def emit(self, type_: str, **fields: object) -> dict:
        """Append an event of `type_` with `fields`; returns the event."""
        event = {"v": EVENT_SCHEMA, "t": time.time(), "type": type_, **fields}
        self._writer.append(event, sync=type_ in DURABLE)
        for listener in self._listeners:
            listener(event)
        return event

    def close(self) -> None:
        """Flush and close the file."""
        self._writer.close()
