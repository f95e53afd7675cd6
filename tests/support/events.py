"""Reading a run's events.jsonl in tests: every event, those of one type, the first of a type, and the events
`runners.run.event_types` does not define."""

from __future__ import annotations

from pathlib import Path

from runners.run.event_types import check_event
from runners.run.files import read_jsonl
from runners.run.rundir import RunDir


def _events_file(run: RunDir | Path) -> Path:
    return run.events if isinstance(run, RunDir) else run / "events.jsonl"


def read_events(run: RunDir | Path) -> list[dict]:
    """Every complete event of a run directory (a RunDir or its path), in order; none when there is no log yet."""
    return read_jsonl(_events_file(run))


def events_of_type(run: RunDir | Path, kind: str) -> list[dict]:
    """The events of `run` whose type is `kind`, in order."""
    return [e for e in read_events(run) if e.get("type") == kind]


def first_event(run: RunDir | Path, kind: str) -> dict | None:
    """The first event of `run` whose type is `kind`, or None."""
    return next(iter(events_of_type(run, kind)), None)


def event_types(run: RunDir | Path) -> list[str]:
    """The type of every event of `run`, in order."""
    return [e.get("type") for e in read_events(run)]


def undefined_events(root: Path) -> list[str]:
    """Every problem `check_event` finds in the events.jsonl files under `root`, with the file."""
    return [
        f"{path.relative_to(root)}: {problem}"
        for path in root.rglob("events.jsonl")
        for line in read_jsonl(path)
        for problem in check_event(line)
    ]
