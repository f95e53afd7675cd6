"""When a step's profiler may be started and stopped, and what a stop that fails costs the target.

The rules (two hung `stop_profile` calls hard-rebooted a Spark): start or stop only while the guard
says memory is OK; never call `stop_profile` in an emergency; a stop that misses its deadline, fails
or meets a memory alarm gets the target killed and the trace recorded as lost. The step's own
measurements stand; the session restarts a verified target for the steps left.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

from runners.plan.steps import StepKey
from runners.run.event_types import ProfileCaptured, ProfileLost, ProfileStarted, ServeKilled
from runners.run.events import EventLog
from runners.serve.runtime import ServeError, ServeRuntime
from runners.soak.memory_watch import MemoryWatch
from runners.soak.profiler import ProfileRecord, ProfilerError, start_profile, stop_profile


def profiler_refusal(status: dict | None) -> str | None:
    """Why a profiler must not be started or stopped at this guard status: WARN or worse, or unknown."""
    if status is None:
        return "the guard's status cannot be read"
    if status.get("level") != "ok":
        return f"memory at {str(status.get('level')).upper()}: {status.get('reason')}"
    return None


class StepProfiler:
    """The profiler of one step's target, started and stopped under the rules above."""

    def __init__(self, runtime: ServeRuntime, events: EventLog, memory: MemoryWatch, step: StepKey) -> None:
        self.runtime, self.events, self.memory, self.step = runtime, events, memory, step
        self.kill_failed: str | None = None  # set when the target could not be killed after a lost trace

    def refused(self) -> str | None:
        """Why the profiler must not be touched now (never refused without a guard)."""
        guard = self.memory.guard
        return None if guard is None else profiler_refusal(guard.status())

    async def start(self, trace_dir: Path) -> str | None:
        """Start the target's profiler if memory allows; a reason for failing the step otherwise."""
        refused = self.refused()
        if refused:
            return f"profiler not started: {refused}"
        try:
            answer = await start_profile(self.runtime.base_url, str(trace_dir))
        except ProfilerError as exc:
            return f"profiler could not start: {exc}"
        self.events.emit(ProfileStarted(self.step, answer))
        return None

    async def stop(self, deadline_s: float) -> ProfileRecord:
        """Stop the profiler under its hard deadline, never in an emergency; kill the target if it will not stop."""
        refused = self.refused()
        if refused:
            record = ProfileRecord("lost", f"stop_profile not called: {refused}; the target was killed instead")
        else:
            stop = asyncio.create_task(stop_profile(self.runtime.base_url, deadline_s))
            await asyncio.wait({stop} | self.memory.tasks(), return_when=asyncio.FIRST_COMPLETED)
            if stop.done() and stop.exception() is None:
                answer, took = stop.result()
                record = ProfileRecord("captured", trace=answer.get("trace"), stop_s=round(took, 3))
                self.events.emit(ProfileCaptured(self.step, **record.as_dict()))
                return record
            if stop.done():
                reason = str(stop.exception())
            else:
                stop.cancel()
                reason = f"memory watchdog alarm during stop_profile: {self.memory.reason()}"
            record = ProfileRecord("lost", f"{reason}; the target was killed")
        self.events.emit(ProfileLost(self.step, **record.as_dict()))
        step = self.step
        try:
            ended = await self.runtime.kill()
            self.events.emit(ServeKilled(step.arm, step.mode, ended.describe(), record.reason))
        except ServeError as exc:
            where = f"{step.arm}/{step.mode}"
            self.kill_failed = f"the serve target of {where} could not be killed after a lost profile: {exc}"
        return record

    @staticmethod
    def lost_to_abort() -> ProfileRecord:
        """An abort must be quick: the target is stopped, not its profiler, and the trace is lost."""
        return ProfileRecord("lost", "the run was aborted before stop_profile")
