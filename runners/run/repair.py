"""What a runner session repairs in its run directory before it starts, each repair kept and said.

- torn last lines of every `*.jsonl` file: moved to `<file>.torn` (files.set_aside_torn_tail), so every
  line parses and the session's first line does not complete an old fragment;
- a state.json that cannot be read: it is derived, so it is rebuilt from events.jsonl and the DONE markers
  (the damaged copy kept as `state.json.damaged`);
- a provenance.json that cannot be read: kept as `provenance.json.damaged`; the session starts a new one.

run.json is not repaired: it holds the run's id and the plan's directory, which nothing else records for sure
(RunDir.info says what to do). Each repair becomes a `run_dir_repaired` event once the event log is open.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

from runners.plan.steps import StepKey
from runners.run.event_types import RunDirRepaired, RunFinished, RunStarted, StepFailed
from runners.run.files import read_json, read_jsonl, set_aside_torn_tails, write_json_atomic
from runners.run.rundir import RunDir, RunState


@dataclass(frozen=True)
class Repair:
    """One repair: the file (relative to the run directory), what was done, and what was kept where."""

    file: str
    action: str
    detail: str

    def event(self) -> RunDirRepaired:
        """The `run_dir_repaired` event that records it."""
        return RunDirRepaired(self.file, self.action, self.detail)


def keep_aside(path: Path, label: str = "damaged") -> Path:
    """Rename `path` to `<name>.<label>` (or `<name>.<label>-N`, never over an earlier one); the new path."""
    target = path.with_name(f"{path.name}.{label}")
    n = 1
    while target.exists():
        n += 1
        target = path.with_name(f"{path.name}.{label}-{n}")
    path.rename(target)
    return target


def set_aside_torn_lines(run: RunDir) -> list[Repair]:
    """Every JSONL file of the run cut back to its last whole line, the fragments kept in `.torn` sidecars."""
    return [
        Repair(str(t.path.relative_to(run.root)), "torn_line_set_aside", t.describe())
        for t in set_aside_torn_tails(run.root)
    ]


def rebuilt_state(run: RunDir, steps: list[StepKey]) -> RunState:
    """state.json as events.jsonl and the DONE markers tell it: when the run began, how the last session ended."""
    info = run.info()
    events = read_jsonl(run.events)
    begins = [i for i, e in enumerate(events) if e.get("type") == RunStarted.TYPE]
    starts = [events[i] for i in begins]
    state = RunState(run_id=str(info["run_id"]), plan=str(info.get("plan", "?")), steps_total=len(steps))
    state.steps_done = sum(run.is_done(s) for s in steps)
    created = info.get("created_at")
    state.started_at = starts[0].get("t") if starts else created if isinstance(created, (int, float)) else None
    last = events[begins[-1] :] if begins else events
    state.steps_failed = sum(e.get("type") == StepFailed.TYPE for e in last)
    finish = next((e for e in reversed(last) if e.get("type") == RunFinished.TYPE), None)
    if finish is not None and finish.get("status") in ("finished", "failed", "aborted"):
        state.status, state.reason, state.ended_at = finish["status"], str(finish.get("reason", "")), finish.get("t")
        state.resumable = state.status != "finished" or state.steps_done < len(steps)
        if state.status == "finished" and state.resumable:
            state.status, state.reason = "failed", f"{len(steps) - state.steps_done} step(s) are not DONE"
    elif starts or state.steps_done:
        state.status, state.reason = "failed", "the last session ended without run_finished (its runner was killed)"
    return state


def rebuild_damaged_state(run: RunDir, steps: list[StepKey]) -> Repair | None:
    """When state.json cannot be read: keep it aside and write the state rebuilt from the evidence."""
    state = run.read_state()
    if state is None or state.status != "damaged":
        return None
    why = state.reason
    kept = keep_aside(run.state_json)
    fresh = rebuilt_state(run, steps)
    write_json_atomic(run.state_json, asdict(fresh))
    return Repair(
        "state.json", "state_rebuilt",
        f"{why.split(';')[0]}; rebuilt from events.jsonl and the DONE markers ({fresh.steps_done} of "
        f"{fresh.steps_total} steps DONE, last session {fresh.status}); the damaged copy is {kept.name}",
    )  # fmt: skip


def set_aside_damaged_provenance(run: RunDir) -> Repair | None:
    """When provenance.json cannot be read (or has no session list): keep it aside; the session starts a new one."""
    try:
        prov = read_json(run.provenance)
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:
        why = str(exc).removeprefix(f"{run.provenance}: ")
    else:
        if isinstance(prov, dict) and isinstance(prov.get("sessions"), list) and isinstance(prov.get("host"), dict):
            return None
        why = "not a provenance record (no `sessions` list)"
    kept = keep_aside(run.provenance)
    return Repair("provenance.json", "provenance_set_aside",
                  f"provenance.json is damaged ({why}); kept as {kept.name}, a new one starts with this session; "
                  "earlier sessions' host and versions are only in the damaged copy")  # fmt: skip


def repair_for_session(run: RunDir, steps: list[StepKey]) -> list[Repair]:
    """Every repair a session makes before it starts (the caller holds the runner lock)."""
    repairs = set_aside_torn_lines(run)
    for repair in (rebuild_damaged_state(run, steps), set_aside_damaged_provenance(run)):
        if repair is not None:
            repairs.append(repair)
    return repairs
