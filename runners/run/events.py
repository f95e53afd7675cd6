"""`events.jsonl`: append-only typed events, one JSON object per line with `v`, `t` and `type`.

Every event type and its fields are defined in `runners.run.event_types` (and tabled in
docs/architecture.md). Readers ignore fields and types they do not know, so adding either is
backwards compatible; renaming or removing one bumps EVENT_SCHEMA.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

from runners.run.event_types import EVENT_SCHEMA, Event
from runners.run.files import JsonlWriter

Listener = Callable[[dict], None]


class EventLog:
    """Writes events to events.jsonl and hands each one to in-process listeners."""

    def __init__(self, path: Path) -> None:
        self._writer = JsonlWriter(path)
        self._listeners: list[Listener] = []

    def subscribe(self, listener: Listener) -> None:
        """Call `listener(event)` after every event is written."""
        self._listeners.append(listener)

    def emit(self, event: Event) -> dict:
        """Append `event` (fsynced when its type is durable); returns the line as written."""
        line = event_line(event, time.time())
        self._writer.append(line, sync=event.DURABLE)
        for listener in self._listeners:
            listener(line)
        return line

    def close(self) -> None:
        """Flush and close the file."""
        self._writer.close()


def event_line(event: Event, t: float) -> dict:
    """The JSON object of `event` at unix time `t`: the envelope (`v`, `t`, `type`) and its fields."""
    return {"v": EVENT_SCHEMA, "t": t, "type": event.TYPE, **event.fields()}
