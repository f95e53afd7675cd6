"""Reading one step's files for evidence, tolerant of damage: a bad file or field is reported, never raised."""

from __future__ import annotations

import math

from runners.plan.steps import StepKey
from runners.replay.pauses import PauseAccount
from runners.replay.records import RequestRecord
from runners.run.files import JsonlTail, read_json
from runners.run.rundir import RunDir


def phase_record(run: RunDir, step: StepKey) -> dict:
    """The step's phase.json as a dict; {} when it is missing, unreadable or not an object."""
    try:
        record = read_json(run.step_dir(step) / "phase.json")
    except (OSError, ValueError):
        return {}
    return record if isinstance(record, dict) else {}


def number(value: object) -> float | None:
    """A finite int or float as float; None for anything else (strings, bools, NaN, missing)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value) if math.isfinite(value) else None


def section(record: dict, key: str) -> dict:
    """record[key] when it is a JSON object, else {}."""
    value = record.get(key)
    return value if isinstance(value, dict) else {}


def step_wall_s(record: dict) -> float | None:
    """The step's wall time from phase.json `stats.wall_s`; None when absent, damaged or not above 0."""
    wall = number(section(record, "stats").get("wall_s"))
    return wall if wall is not None and wall > 0 else None


def recorded_pause(record: dict) -> PauseAccount:
    """The pause account of a step's phase.json (runners/replay/pauses.py).

    A record with a `pause` section gives it back. One written before pauses were accounted has only
    `paused_s`, all of it inside its wall time: that whole time counts as in flight (the wall time of
    an unpaused step lies somewhere in [wall - paused_s, wall]). Damaged or missing fields read as 0.
    """
    pause = section(record, "pause")
    if not pause:
        legacy = max(0.0, number(record.get("paused_s")) or 0.0)
        return PauseAccount(paused_s=legacy, in_flight_s=legacy)
    spans = pause.get("intervals") if isinstance(pause.get("intervals"), list) else []
    intervals = tuple(
        (float(s[0]), float(s[1]))
        for s in spans
        if isinstance(s, list) and len(s) == 2 and all(number(v) is not None for v in s)
    )
    requests = number(pause.get("requests"))
    return PauseAccount(
        intervals=intervals,
        paused_s=max(0.0, number(pause.get("paused_s")) or 0.0),
        idle_s=max(0.0, number(pause.get("idle_s")) or 0.0),
        in_flight_s=max(0.0, number(pause.get("in_flight_s")) or 0.0),
        requests=int(requests) if requests is not None and requests > 0 else 0,
    )


_INTS = ("scheduled_ns", "sent_ns")
_OPTIONAL_INTS = ("ttft_ns", "e2e_ns", "output_tokens", "prompt_tokens", "ended_ns")


def _sound(rec: RequestRecord) -> bool:
    """True when the fields metrics compute with have the types they need."""

    def is_int(v: object) -> bool:
        return isinstance(v, int) and not isinstance(v, bool)

    return (
        isinstance(rec.status, str)
        and all(is_int(getattr(rec, name)) for name in _INTS)
        and all(getattr(rec, name) is None or is_int(getattr(rec, name)) for name in _OPTIONAL_INTS)
        and isinstance(rec.during_pause, bool)
        and isinstance(rec.chunk_ns, list)
        and all(is_int(v) for v in rec.chunk_ns)
    )


def request_records(run: RunDir, step: StepKey) -> tuple[list[RequestRecord], int]:
    """The step's RequestRecords and how many lines of requests.jsonl could not be read as one."""
    records: list[RequestRecord] = []
    tail = JsonlTail(run.step_dir(step) / "requests.jsonl")
    try:
        lines = tail.read_new(max_bytes=None)
    except OSError:
        return [], 1
    bad = tail.bad_lines + bool(tail.pending)  # a last line without its newline cannot be read either
    for line in lines:
        try:
            rec = RequestRecord.from_dict(line)
        except (KeyError, TypeError, ValueError):
            bad += 1
            continue
        if _sound(rec):
            records.append(rec)
        else:
            bad += 1
    return records, bad
