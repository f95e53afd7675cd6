"""When a step's profiler may be started and stopped, and what a stop that fails costs the target.

The rules (two hung `stop_profile` calls hard-rebooted a Spark): start or stop only while the guard
says memory is OK; never call `stop_profile` in an emergency; a stop that misses its deadline, fails
or meets a memory alarm gets the target killed. Either way the files the profiler wrote are then
collected into the step: a trace is "captured", or "recovered after kill", and "lost" only when none
appeared. The step's own measurements stand; after a kill the session restarts a verified target for
the steps left.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

from runners.plan.steps import StepKey
from runners.run.event_types import ProfileCaptured, ProfileLost, ProfileRecovered, ProfileStarted, ServeKilled
from runners.run.events import EventLog
from runners.serve.runtime import ServeError, ServeRuntime
from runners.soak.memory_watch import MemoryWatch
from runners.soak.profiler import (
    CAPTURED,
    LOST,
    RECOVERED,
    ProfileRecord,
    ProfilerError,
    start_profile,
    stop_profile,
)
from runners.soak.trace_files import collect, is_trace, kernel_table, snapshot


def profiler_refusal(status: dict | None) -> str | None:
    """Why a profiler must not be started or stopped at this guard status: WARN or worse, or unknown."""
    if status is None:
        return "the guard's status cannot be read"
    if status.get("level") != "ok":
        return f"memory at {str(status.get('level')).upper()}: {status.get('reason')}"
    return None


class StepProfiler:
    """The profiler of one step's target, started and stopped under the rules above; its files collected.

    The trace directory is the runtime's (`{profile_dir}`) where it owns one, else the step's own
    `profile/` (an external embedded engine writes where /start_profile says).
    """

    def __init__(self, runtime: ServeRuntime, events: EventLog, memory: MemoryWatch, step: StepKey,
                 step_profile_dir: Path) -> None:  # fmt: skip
        self.runtime, self.events, self.memory, self.step = runtime, events, memory, step
        self.step_profile_dir = step_profile_dir
        self.kill_failed: str | None = None  # set when the target could not be killed after a failed stop
        self.killed = False  # the target was killed (or an attempt made) because the profiler would not stop
        self._before: dict[str, tuple[int, int]] = {}

    def refused(self) -> str | None:
        """Why the profiler must not be touched now (never refused without a guard)."""
        guard = self.memory.guard
        return None if guard is None else profiler_refusal(guard.status())

    async def start(self) -> str | None:
        """Start the target's profiler if memory allows; a reason for failing the step otherwise."""
        refused = self.refused()
        if refused:
            return f"profiler not started: {refused}"
        self.step_profile_dir.mkdir(parents=True, exist_ok=True)
        source = self.runtime.profile_dir
        if source is not None:  # files already there belong to earlier steps (or their killed stops)
            self._before = await asyncio.to_thread(snapshot, source)
        trace_dir = self.runtime.profile_dir_in_target or str(self.step_profile_dir)
        try:
            answer = await start_profile(self.runtime.base_url, trace_dir)
        except ProfilerError as exc:
            return f"profiler could not start: {exc}"
        self.events.emit(ProfileStarted(self.step, answer))
        return None

    async def stop(self, deadline_s: float) -> ProfileRecord:
        """Stop the profiler under its hard deadline, never in an emergency; kill the target if it will not stop.
        Then collect the files it wrote (recovered when the target had to be killed) and read the kernel table."""
        refused = self.refused()
        stop_s = None
        if refused:
            failure: str | None = f"stop_profile not called: {refused}"
        else:
            stop = asyncio.create_task(stop_profile(self.runtime.base_url, deadline_s))
            await asyncio.wait({stop} | self.memory.tasks(), return_when=asyncio.FIRST_COMPLETED)
            if stop.done() and stop.exception() is None:
                failure, stop_s = None, round(stop.result()[1], 3)
            elif stop.done():
                failure = str(stop.exception())
            else:
                stop.cancel()
                failure = f"memory watchdog alarm during stop_profile: {self.memory.reason()}"
        if failure is not None:
            await self._kill(failure)
        record = await self._collected(failure, stop_s)
        event = {CAPTURED: ProfileCaptured, RECOVERED: ProfileRecovered}.get(record.status, ProfileLost)
        self.events.emit(event(self.step, **record.event_fields()))
        return record

    async def _kill(self, failure: str) -> None:
        step = self.step
        self.killed = True
        try:
            ended = await self.runtime.kill()
            self.events.emit(ServeKilled(step.arm, step.mode, ended.describe(), failure))
        except ServeError as exc:
            where = f"{step.arm}/{step.mode}"
            self.kill_failed = f"the serve target of {where} could not be killed after a failed profile stop: {exc}"

    async def _collected(self, failure: str | None, stop_s: float | None) -> ProfileRecord:
        """Move the new files into the step, and judge: captured, recovered after kill, or lost."""
        dest = self.step_profile_dir
        source = self.runtime.profile_dir
        collected = await collect(source, self._before, dest) if source is not None else None
        names = await asyncio.to_thread(lambda: tuple(sorted(str(p.relative_to(dest)) for p in dest.rglob("*")
                                                             if p.is_file())))  # fmt: skip
        traces = tuple(n for n in names if is_trace(n))
        collect_s = collected.waited_s if collected else None
        if not traces:
            where = source or dest
            if failure is None:
                reason = (f"stop_profile answered, but no trace file appeared in {where}: does the target's "
                          "profiler write into the {profile_dir} placeholder (vLLM: --profiler-config "
                          "torch_profiler_dir)?")  # fmt: skip
            else:
                reason = f"{failure}; the target was killed and no trace file appeared in {where}"
            return ProfileRecord(LOST, reason, None, stop_s, names, collect_s)
        kernels = await asyncio.to_thread(kernel_table, dest, traces)
        trace = str(dest / traces[0])
        if failure is None:
            return ProfileRecord(CAPTURED, "", trace, stop_s, names, collect_s, kernels)
        growing = "; a file was still changing when collected" if collected and collected.still_changing else ""
        reason = f"{failure}; the target was killed, and the trace it had written was kept{growing}"
        return ProfileRecord(RECOVERED, reason, trace, stop_s, names, collect_s, kernels)

    @staticmethod
    def lost_to_abort() -> ProfileRecord:
        """An abort must be quick: the target is stopped, not its profiler, and the trace is lost."""
        return ProfileRecord(LOST, "the run was aborted before stop_profile")
