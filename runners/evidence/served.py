"""The models a run's serve target answered with, from events.jsonl `serve_ready` (never raises)."""

from __future__ import annotations

from runners.run.event_types import ServeReady
from runners.run.files import JsonlTail
from runners.run.rundir import RunDir


def served_models(run: RunDir) -> tuple[str, ...]:
    """The distinct `/v1/models` ids of every `serve_ready` event, in order; () when the log cannot be read."""
    try:
        events = JsonlTail(run.events).read_new(max_bytes=None)
    except OSError:
        return ()
    models = (e.get("model") for e in events if isinstance(e, dict) and e.get("type") == ServeReady.TYPE)
    return tuple(dict.fromkeys(m for m in models if isinstance(m, str) and m))
