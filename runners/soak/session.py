"""One runner session over a run directory: every step not DONE, arm by arm, each arm's target verified first.

For each serve session (an arm in a mode) the target is started, checked for readiness, and its
effective environment verified before anything is measured; then each step not already DONE runs
(`runners.soak.step`) while the target is watched; the target is always stopped afterwards. A step
that completes gets its DONE marker; anything else leaves it for `--resume`.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from typing import TypeVar

from runners.evidence.step_files import number, phase_record
from runners.plan.load import LoadedPlan
from runners.plan.steps import Session, StepKey
from runners.replay.dispatch_gate import DispatchGate
from runners.run.control import POLL_INTERVAL_S as CONTROL_POLL_S
from runners.run.control import abort_pending
from runners.run.event_types import (
    RunStarted,
    ServeFailed,
    ServeReady,
    ServeRestarting,
    ServeStarting,
    ServeStopFailed,
    ServeStopped,
    StepSkipped,
)
from runners.run.events import EventLog
from runners.run.files import RunDirWriteError
from runners.run.incident_slot import record_incident
from runners.run.provenance import record_target
from runners.run.rundir import RunDir, RunState
from runners.run.runtime_dir import RunRuntimeDir
from runners.run.targets import write_targets
from runners.serve.make import make_runtime
from runners.serve.runtime import ServeError, ServeRuntime
from runners.soak.env_check import verify_env
from runners.soak.host_preflight import drop_cache_before_start
from runners.soak.ledger import RunLedger, SoakResult
from runners.soak.memory_watch import MemoryWatch
from runners.soak.step import StepRun
from runners.soak.step_context import StepContext
from runners.watchdog.link import GuardLink

T = TypeVar("T")
RuntimeFactory = Callable[[Session], ServeRuntime]
MAX_RESTARTS_PER_SESSION = 3
ABORT_STOP_GRACE_S = 8.0


class SoakSession:
    """One runner session over a run directory."""

    def __init__(
        self,
        run: RunDir,
        loaded: LoadedPlan,
        events: EventLog,
        abort: asyncio.Event,
        runtime_factory: RuntimeFactory | None = None,
        guard: GuardLink | None = None,
        gate: DispatchGate | None = None,
        private: RunRuntimeDir | None = None,
    ) -> None:
        self.run_dir = run
        self.private = private  # where each session's ENV sentinel goes; only a runtime_factory may do without
        self.loaded = loaded
        self.plan = loaded.plan
        self.events = events
        self.abort = abort
        self.gate = gate or DispatchGate()
        self.memory = MemoryWatch(guard)
        self.make_runtime = runtime_factory or self._runtime
        info = run.info()
        state = run.read_state() or RunState(run_id=info["run_id"], plan=self.plan.name)
        self.ledger = RunLedger(run, events, state)

    @property
    def run_id(self) -> str:
        """The run's id."""
        return self.ledger.state.run_id

    def fail_closed(self, reason: str) -> None:
        """End the run as failed for `reason` (the guard was lost): no further target starts."""
        self.ledger.fail_run(reason)

    async def run(self) -> SoakResult:
        """Run every step that is not DONE; returns how the session ended."""
        steps = self.plan.steps()
        done_before = sum(self.run_dir.is_done(s) for s in steps)
        self.ledger.begin(len(steps), done_before)
        self.events.emit(
            RunStarted(
                run_id=self.run_id,
                plan=self.plan.name,
                pid=self.ledger.state.runner_pid,
                arms=[a.name for a in self.plan.arms],
                steps=[s.as_dict() for s in steps],
                already_done=done_before,
            )
        )
        try:
            for session in self.plan.sessions():
                if self._stopping():
                    break
                await self._session(session)
        except RunDirWriteError as exc:  # the evidence cannot be written: stop, say so, stay resumable
            record_incident(self.run_dir, str(exc), self.ledger.state.current)  # kept where ENOSPC cannot reach
            return self.ended_early(
                f"the run directory cannot be written: {exc}; free space (or fix permissions), then "
                f"`gb10-console run --resume {self.run_dir.root}`; steps already DONE are kept"
            )
        return self.ledger.finish(self.abort.is_set())

    def crashed(self, exc: BaseException) -> SoakResult:
        """Record a runner error as a failed, resumable session (best effort: the disk may be full)."""
        return self.ended_early(f"runner error: {type(exc).__name__}: {exc}")

    def ended_early(self, reason: str) -> SoakResult:
        """Record a session that could not run (or crashed) as failed and resumable."""
        return self.ledger.ended_early(reason)

    def _runtime(self, session: Session) -> ServeRuntime:
        arm, mode = session.arm.name, session.mode
        assert self.private is not None, "a SoakSession that makes its runtimes needs the private runtime directory"
        env_dir = self.private.session_env_dir(arm, mode)
        return make_runtime(self.loaded, self.plan.session_env(arm, mode), self.run_dir.serve_dir(arm, mode), env_dir,
                            run_id=self.run_id, arm=arm, mode=mode)  # fmt: skip

    def _stopping(self) -> bool:
        return self.abort.is_set() or self.ledger.stopped

    async def _session(self, session: Session) -> None:
        arm, mode = session.arm.name, session.mode
        todo = []
        for step in session.steps:
            if self.run_dir.is_done(step):
                own = phase_record(self.run_dir, step)  # the step's own times, not this session's
                self.events.emit(StepSkipped(step, "DONE in an earlier session",
                                             number(own.get("started_at")), number(own.get("ended_at"))))  # fmt: skip
            else:
                todo.append(step)
        restarts = 0
        while todo and not self._stopping():
            todo = await self._target_session(session, todo)
            if not todo:
                return
            restarts += 1
            if restarts > MAX_RESTARTS_PER_SESSION:
                why = f"not run: the serve target was restarted {MAX_RESTARTS_PER_SESSION} times in this session"
                self.ledger.fail(todo, why)
                return
            self.events.emit(ServeRestarting(arm, mode, restarts, [s.as_dict() for s in todo]))

    async def _target_session(self, session: Session, todo: list[StepKey]) -> list[StepKey]:
        """One serve target's life: start, verify, run steps; the steps left when it must be restarted."""
        arm, mode = session.arm.name, session.mode
        runtime = self.make_runtime(session)
        serve = self.plan.serve
        if abort_pending(self.run_dir):  # asked for while the last target stopped: start nothing new
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self.abort.wait(), 2 * CONTROL_POLL_S)
        blocked = await self._unless_aborted(self.memory.recovered(self.plan.watchdog.restart_wait_s, self.events))
        if blocked:
            self.ledger.fail(todo, blocked)
            return []
        if self.abort.is_set():
            return []
        await drop_cache_before_start(self.loaded, self.events, arm, mode)  # opt-in: vLLM's start-up check
        self.events.emit(ServeStarting(arm, mode, runtime.kind, await runtime.inspect()))
        self.memory.arm()
        try:
            try:
                await runtime.start()
            finally:
                ref = runtime.target_ref(arm, mode)
                write_targets(self.run_dir, [ref] if ref else [])  # the guard can end it (it checks the label)
            ready = await self._unless_aborted(runtime.wait_ready(serve.ready_timeout_s))
            if ready is None:
                memory = self.memory.reason()
                if memory:
                    self.ledger.fail(todo, f"not run: {memory}")
                return []
            target = await runtime.inspect()
            record_target(self.run_dir, f"{arm}/{mode}", runtime.provenance())
            self.events.emit(
                ServeReady(arm, mode, ready.model, round(ready.waited_s, 3), target.get("pid"), target.get("name"),
                           runtime.base_url)
            )  # fmt: skip
            expected = runtime.arm_env if runtime.arm_env is not None else self.plan.session_env(arm, mode)
            problem = await verify_env(self.run_dir, self.events, arm, mode, expected, runtime)
            if problem:
                self.ledger.fail(todo, problem)
                return []
            ctx = StepContext(self.run_dir, self.loaded, self.events, self.ledger, self.abort, self.gate, self.memory)
            for i, step in enumerate(todo):
                if self.abort.is_set():
                    return []
                outcome = await StepRun(ctx, step, runtime, ready.model).run()
                self.ledger.step_cleared()
                if outcome == "restart":  # a profiler incident killed the target: the rest run on a new one
                    return todo[i + 1 :]
                memory = self.memory.reason()
                if memory and outcome != "target_died":
                    self.ledger.fail(todo[i + 1 :], f"not run: {memory}")
                    return []
                if outcome == "target_died":
                    self.ledger.fail(todo[i + 1 :], "not run: the serve target died in an earlier step")
                    return []
        except ServeError as exc:
            self.events.emit(ServeFailed(arm, mode, str(exc)))
            if exc.lasting:  # every later start would fail the same way: stop now, the steps stay to run on resume
                self.ledger.fail_run(
                    f"the serve target of {arm}/{mode} cannot start: {exc}. Fix that, then "
                    f"`gb10-console run --resume {self.run_dir.root}`"
                )
            else:
                self.ledger.fail([s for s in todo if not self.run_dir.is_done(s)], f"serve target failed: {exc}")
        finally:
            self.memory.disarm()
            await self._stop_target(runtime, arm, mode)
            if self.private is not None:  # the session's real values go with its target
                self.private.remove_session(arm, mode)
        return []

    async def _stop_target(self, runtime: ServeRuntime, arm: str, mode: str) -> None:
        """Stop the target; one that cannot be stopped ends the run (the next arm must not share the GPU)."""
        grace = self.plan.serve.stop_timeout_s
        if self.abort.is_set():  # an operator's abort must have the target down within 15 s
            grace = min(grace, ABORT_STOP_GRACE_S)
        try:
            ended = await runtime.stop(grace)
        except Exception as exc:  # ServeError, or a runtime bug: either way fail closed
            reason = str(exc) if isinstance(exc, ServeError) else f"{type(exc).__name__}: {exc}"
            self.ledger.fail_run(f"the serve target of {arm}/{mode} could not be stopped: {reason}")
            self.events.emit(ServeStopFailed(arm, mode, reason))
            return
        with contextlib.suppress(RunDirWriteError):  # a stale list only names a target that is gone
            write_targets(self.run_dir, [])
        self.events.emit(ServeStopped(arm, mode, ended.describe(), await runtime.inspect()))

    async def _unless_aborted(self, work: Awaitable[T]) -> T | None:
        """Await `work`, or cancel it and return None as soon as an abort is requested or memory alarms."""
        task = asyncio.ensure_future(work)
        stop = asyncio.create_task(self.abort.wait())
        try:
            await asyncio.wait({task, stop} | self.memory.tasks(), return_when=asyncio.FIRST_COMPLETED)
        finally:
            stop.cancel()
        if task.done():
            return task.result()
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        return None
