"""The session's bookkeeping: state.json, the steps that failed and why, and the events that say so."""

from __future__ import annotations

import contextlib
import os
import time
from dataclasses import dataclass
from typing import Literal

from runners.plan.steps import StepKey
from runners.run.event_types import RunFinished, StepFailed, StepFinished
from runners.run.events import EventLog
from runners.run.rundir import RunDir, RunState


@dataclass(frozen=True)
class SoakResult:
    """How the soak ended."""

    status: Literal["finished", "failed", "aborted"]
    reason: str
    steps_done: int
    steps_failed: int
    nothing_to_do: bool = False  # a finished run executed again: nothing ran and nothing was changed

    @property
    def exit_code(self) -> int:
        """0 finished, 1 failed, 3 aborted (resumable)."""
        return {"finished": 0, "failed": 1, "aborted": 3}[self.status]


class RunLedger:
    """state.json kept true as steps start, finish and fail; `fatal` once the run must not go on."""

    def __init__(self, run: RunDir, events: EventLog, state: RunState) -> None:
        self.run_dir = run
        self.events = events
        self.state = state
        self.failed: list[tuple[StepKey, str]] = []
        self.fatal: str | None = None  # why the run must not go on (set through fail_run)

    def save(self) -> None:
        """Write state.json (atomic replace)."""
        self.run_dir.write_state(self.state)

    def begin(self, steps_total: int, done_before: int) -> None:
        """A runner session starts: running, resumable, counts for this session."""
        st = self.state
        st.status, st.reason, st.resumable = "running", "", True
        st.steps_total, st.steps_done, st.steps_failed = steps_total, done_before, 0
        st.runner_pid, st.ended_at = os.getpid(), None
        st.started_at = st.started_at or time.time()
        self.save()

    def step_started(self, step: StepKey) -> None:
        """`step` is in flight (the console's current step)."""
        self.state.current = step.as_dict()
        self.save()

    def step_cleared(self) -> None:
        """No step is in flight."""
        self.state.current = None
        self.save()

    def step_done(self, step: StepKey, stats: dict, extras: dict) -> None:
        """Write the step's DONE marker, count it and say so (`step_finished`)."""
        self.run_dir.mark_done(step, {"stats": stats})
        self.state.steps_done += 1
        self.save()
        self.events.emit(StepFinished(step, stats, **extras))

    def fail_run(self, reason: str) -> None:
        """The run must not go on (a target that cannot be stopped or killed, a lost guard): it ends failed."""
        self.fatal = reason

    @property
    def stopped(self) -> bool:
        """True once `fail_run` was called."""
        return self.fatal is not None

    def fail(self, steps: list[StepKey], reason: str) -> None:
        """Record `steps` as failed for `reason` (each one a `step_failed` event)."""
        for step in steps:
            self.failed.append((step, reason))
            self.state.steps_failed += 1
            self.events.emit(StepFailed(step, reason))
        self.save()

    def finish(self, aborted: bool) -> SoakResult:
        """The session ran to its end (or its abort): status, reason and `run_finished`."""
        st = self.state
        st.current = None
        if self.fatal is not None:
            status, reason = "failed", self.fatal
        elif aborted:
            status, reason = "aborted", "aborted on request; `--resume` continues with the steps not done"
        elif self.failed:
            step, why = self.failed[0]
            status, reason = "failed", f"{len(self.failed)} step(s) failed; first: {step.path}: {why}"
        else:
            status, reason = "finished", f"all {st.steps_total} steps done"
        st.status, st.reason, st.resumable = status, reason, status != "finished"
        st.ended_at = time.time()
        self.save()
        self.events.emit(RunFinished(status, reason, st.steps_done, st.steps_failed))
        return SoakResult(status, reason, st.steps_done, st.steps_failed)

    def ended_early(self, reason: str) -> SoakResult:
        """A session that could not run (or crashed): failed and resumable (best effort: the disk may be full)."""
        st = self.state
        st.status, st.reason, st.resumable, st.current, st.ended_at = "failed", reason, True, None, time.time()
        with contextlib.suppress(OSError):
            self.save()
        with contextlib.suppress(OSError):
            self.events.emit(RunFinished("failed", reason, st.steps_done, st.steps_failed))
        return SoakResult("failed", reason, st.steps_done, st.steps_failed)
