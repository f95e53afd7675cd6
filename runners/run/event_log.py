"""Reading events.jsonl as evidence: is the log whole, and what the run's status reads as.

The log is incomplete when a line of it cannot be read, it ends in a line without its newline while no
runner writes it, torn lines were set aside to `events.jsonl.torn`, a session (`run_started`) has no
`run_finished` before the next session or the end of the file while no runner is live, or a step is DONE
without its `step_finished`. A run with such a log never reads "finished": `status_label` says
`incomplete (event log cut)`, and the report lists what is missing instead of "no incident recorded".
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass

from runners.plan.steps import StepKey
from runners.run.event_types import RunFinished, RunStarted, StepFinished
from runners.run.files import SCAN_BLOCK, JsonlTail, torn_records, torn_sidecar
from runners.run.incident_slot import read_incident
from runners.run.rundir import RunDir, RunState, runner_alive

INTERRUPTED = "interrupted (resumable)"
DISK_STOPPED = "failed (resumable): the run directory could not be written"
INCOMPLETE = "incomplete (event log cut)"
ENDED = ("finished", "failed", "aborted")
SESSION_TYPES = (RunStarted.TYPE.encode(), RunFinished.TYPE.encode())


@dataclass(frozen=True)
class EventLogReading:
    """Every readable event of events.jsonl, and what shows the log is not whole (empty when it is)."""

    events: list[dict]
    problems: tuple[str, ...]

    @property
    def complete(self) -> bool:
        """True when nothing shows a part of the log is missing."""
        return not self.problems


def _when(t: object) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(t)) if isinstance(t, (int, float)) else "?"


def read_event_log(run: RunDir, steps: list[StepKey] | None = None, live: bool | None = None) -> EventLogReading:
    """Read events.jsonl and judge whether it is whole; `steps` (the plan's) adds the DONE-marker check.

    `live` (default: whether a runner holds the lock) excuses the last session's missing `run_finished`
    and a last line still being written.
    """
    live = runner_alive(run) if live is None else live
    tail = JsonlTail(run.events)
    events = tail.read_new(max_bytes=None)
    problems: list[str] = []
    if tail.bad_lines:
        problems.append(f"{tail.bad_lines} line(s) of events.jsonl cannot be read as events")
    if tail.pending and not live:
        problems.append(f"events.jsonl ends in a {len(tail.pending)}-byte line without its newline (a write cut off)")
    torn = torn_records(run.events)
    if torn:
        problems.append(
            f"{len(torn)} torn line(s) were set aside from events.jsonl to {torn_sidecar(run.events).name}: "
            "the events they held are lost"
        )
    problems += _open_sessions(events, live)
    if not live:
        problems += _state_disagrees(run, events)
    if steps is not None:
        problems += _done_without_finish(run, steps, events)
    return EventLogReading(events, tuple(problems))


def _open_sessions(events: list[dict], live: bool) -> list[str]:
    """A session (run_started) with no run_finished before the next one, or before the end while no runner is live."""
    out = []
    opened: dict | None = None
    for e in events:
        kind = e.get("type")
        if kind == RunStarted.TYPE:
            if opened is not None:
                out.append(f"the session begun {_when(opened.get('t'))} has no run_finished: its runner was killed "
                           "or the log lost its lines")  # fmt: skip
            opened = e
        elif kind == RunFinished.TYPE:
            opened = None
    if opened is not None and not live:
        out.append(f"the last session (begun {_when(opened.get('t'))}) has no run_finished and no runner is live: "
                   "its runner was killed or events.jsonl was cut")  # fmt: skip
    return out


def _state_disagrees(run: RunDir, events: list[dict]) -> list[str]:
    """state.json says the run ended one way, the log's last session ended another (or not at all)."""
    state = run.read_state()
    if state is None or state.status not in ENDED:
        return []
    last = next((e for e in reversed(events) if e.get("type") in (RunStarted.TYPE, RunFinished.TYPE)), None)
    if last is not None and last.get("type") == RunStarted.TYPE:
        return []  # _open_sessions says so
    problem = _ending_problem(state, last)
    return [problem] if problem else []


def _ending_problem(state: RunState, last: dict | None) -> str | None:
    """Why `last` (the log's last run_started or run_finished) does not end the run as state.json says, or None."""
    if last is None:
        return f"events.jsonl has no run_finished, but state.json says the run {state.status}"
    if last.get("type") != RunFinished.TYPE:
        return f"the last session (begun {_when(last.get('t'))}) has no run_finished"
    if (last.get("status"), last.get("steps_done")) != (state.status, state.steps_done):
        ended = f"{last.get('status')} with {last.get('steps_done')} step(s) DONE"
        return (f"events.jsonl's last session ended {ended}, but state.json says {state.status} with "
                f"{state.steps_done}: the log lost its later sessions")  # fmt: skip
    return None


def _done_without_finish(run: RunDir, steps: list[StepKey], events: list[dict]) -> list[str]:
    """Steps with a DONE marker and no step_finished event: the log lost the lines that said so."""
    finished = set()
    for e in events:
        if e.get("type") == StepFinished.TYPE and isinstance(e.get("step"), dict):
            try:
                finished.add(StepKey.from_dict(e["step"]))
            except (KeyError, TypeError, ValueError):
                continue
    missing = [s for s in steps if s not in finished and run.is_done(s)]
    if not missing:
        return []
    return [f"{len(missing)} DONE step(s) have no step_finished in events.jsonl (first: {missing[0].path}): "
            "the log is missing part of the run's history"]  # fmt: skip


def last_session_event(run: RunDir) -> dict | None:
    """The last `run_started` or `run_finished` of events.jsonl (None when there is none or it cannot be read).

    Cheap: reads the file backwards only as far as that event (for listings of many runs).
    """
    try:
        fd = os.open(run.events, os.O_RDONLY)
    except FileNotFoundError:
        return None
    try:
        end = os.fstat(fd).st_size
        carry = b""
        while end > 0:
            start = max(0, end - SCAN_BLOCK)
            lines = (os.pread(fd, end - start, start) + carry).split(b"\n")
            carry = lines.pop(0) if start > 0 else b""
            for line in reversed(lines):
                if any(b'"type":"' + kind + b'"' in line for kind in SESSION_TYPES):
                    try:
                        event = json.loads(line)
                    except ValueError:
                        return None
                    return event if isinstance(event, dict) else None
            end = start
        return None
    finally:
        os.close(fd)


def _log_agrees(run: RunDir, state: RunState) -> bool:
    """Whether events.jsonl ends as state.json says the run ended: whole, its last session event a
    `run_finished` with state.json's status and DONE count."""
    try:
        with open(run.events, "rb") as fh:
            size = fh.seek(0, os.SEEK_END)
            if size and os.pread(fh.fileno(), 1, size - 1) != b"\n":
                return False  # a torn last line
    except FileNotFoundError:
        return False
    return _ending_problem(state, last_session_event(run)) is None


def status_label(run: RunDir, state: RunState | None = None, live: bool | None = None) -> str:
    """The run's status as every display shows it: state.json's label, but `damaged` for a state.json that
    cannot be read, INTERRUPTED for "running" with no live runner (DISK_STOPPED when it kept a disk-full incident
    in incident.slot), INCOMPLETE when (no runner being live)
    events.jsonl does not end as state.json says the run ended (a torn last line, a last session without
    `run_finished`, or one that finished otherwise), `created` before the first snapshot."""
    live = runner_alive(run) if live is None else live  # first: a runner that ends meanwhile has written its state
    state = run.read_state() if state is None else state
    if state is None:
        return "created"
    if live or state.status in ("damaged", "created"):
        return state.label()
    if state.status == "running":  # a runner that could not write its end may have kept it in the slot
        return DISK_STOPPED if read_incident(run) is not None else INTERRUPTED
    if not _log_agrees(run, state):
        return INCOMPLETE
    return state.label()
