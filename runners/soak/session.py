"""Run a plan's steps against their serve targets, writing evidence and events as it goes.

For each session (an arm in a mode) the target is started, checked for readiness, and its
effective environment verified before anything is measured; then each step not already DONE runs
under its deadline while the target is watched; the target is always stopped afterwards. A step
that completes gets its DONE marker; anything else leaves it for `--resume`.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from functools import partial
from typing import Literal, TypeVar

from runners.host.owner import process_start_ticks, this_runner
from runners.plan.load import LoadedPlan
from runners.plan.serve_spec import DockerServe, ExternalServe
from runners.plan.steps import Session, StepKey
from runners.replay.dispatch import replay
from runners.replay.dispatch_gate import DispatchGate
from runners.replay.metrics import Slo, phase_stats
from runners.replay.prompts import DatasetError
from runners.replay.records import RequestRecord
from runners.replay.server_metrics import MetricsSampler
from runners.replay.server_metrics import summarize as summarize_metrics
from runners.replay.workloads import evaluate, prepare
from runners.run.control import POLL_INTERVAL_S as CONTROL_POLL_S
from runners.run.control import abort_pending
from runners.run.events import EventLog
from runners.run.files import JsonlWriter, RunDirWriteError, write_json_atomic
from runners.run.provenance import record_target
from runners.run.redact import redact_env
from runners.run.rundir import RunDir, RunState
from runners.run.targets import TargetRef, write_targets
from runners.serve.docker import DockerRuntime
from runners.serve.external import ExternalRuntime
from runners.serve.health_watch import watch_health
from runners.serve.process import ProcessRuntime
from runners.serve.readiness import env_mismatches, fetch_target_report
from runners.serve.runtime import ExitInfo, ProbeResult, ServeError, ServeRuntime
from runners.soak.profiler import ProfileRecord, ProfilerError, start_profile, stop_profile
from runners.watchdog.link import GuardLink

PROGRESS_EVERY_S = 0.5
TARGET_DEATH_GRACE_S = 2.0
SERVER_METRICS_FILE = "server_metrics.jsonl"
T = TypeVar("T")
RuntimeFactory = Callable[[Session], ServeRuntime]
StepOutcome = Literal["done", "failed", "aborted", "target_died", "restart"]
MAX_RESTARTS_PER_SESSION = 3
ABORT_STOP_GRACE_S = 8.0


@dataclass(frozen=True)
class SoakResult:
    """How the soak ended."""

    status: Literal["finished", "failed", "aborted"]
    reason: str
    steps_done: int
    steps_failed: int

    @property
    def exit_code(self) -> int:
        """0 finished, 1 failed, 3 aborted (resumable)."""
        return {"finished": 0, "failed": 1, "aborted": 3}[self.status]


class Soak:
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
    ) -> None:
        self.run_dir = run
        self.gate = gate or DispatchGate()
        self.loaded = loaded
        self.plan = loaded.plan
        self.events = events
        self.abort = abort
        self.make_runtime = runtime_factory or self._runtime
        self.guard = guard
        self.failed: list[tuple[StepKey, str]] = []
        self.fatal: str | None = None
        self._oom_kills_seen = 0
        self._alarm: asyncio.Task | None = None
        self._healthy: dict[tuple[str, str], bool] = {}  # (arm, mode): the last /health answer while it is up
        info = run.info()
        self.state = run.read_state() or RunState(run_id=info["run_id"], plan=self.plan.name)

    async def run(self) -> SoakResult:
        """Run every step that is not DONE; returns how the session ended."""
        steps = self.plan.steps()
        done_before = sum(self.run_dir.is_done(s) for s in steps)
        self.state.status, self.state.reason, self.state.resumable = "running", "", True
        self.state.steps_total, self.state.steps_done, self.state.steps_failed = len(steps), done_before, 0
        self.state.runner_pid, self.state.ended_at = os.getpid(), None
        self.state.started_at = self.state.started_at or time.time()
        self._save_state()
        self.events.emit(
            "run_started",
            run_id=self.state.run_id,
            plan=self.plan.name,
            pid=os.getpid(),
            arms=[a.name for a in self.plan.arms],
            steps=[s.as_dict() for s in steps],
            already_done=done_before,
        )
        try:
            for session in self.plan.sessions():
                if self.abort.is_set() or self.fatal:
                    break
                await self._session(session)
        except RunDirWriteError as exc:  # the evidence cannot be written: stop, say so, stay resumable
            return self.ended_early(
                f"the run directory cannot be written: {exc}; free space (or fix permissions), then "
                f"`gb10-console run --resume {self.run_dir.root}`; steps already DONE are kept"
            )
        return self._finish()

    async def _deadline(self, deadline_s: float, paused_before: float) -> None:
        """Return once a step has run `deadline_s` seconds, not counting time dispatch was paused."""
        started = time.monotonic()
        while True:
            ran = time.monotonic() - started - (self.gate.paused_s() - paused_before)
            if ran >= deadline_s:
                return
            await asyncio.sleep(min(deadline_s - ran, 1.0))

    def _finish(self) -> SoakResult:
        st = self.state
        st.current = None
        if self.fatal:
            status, reason = "failed", self.fatal
        elif self.abort.is_set():
            status, reason = "aborted", "aborted on request; `--resume` continues with the steps not done"
        elif self.failed:
            step, why = self.failed[0]
            status, reason = "failed", f"{len(self.failed)} step(s) failed; first: {step.path}: {why}"
        else:
            status, reason = "finished", f"all {st.steps_total} steps done"
        st.status, st.reason, st.resumable = status, reason, status != "finished"
        st.ended_at = time.time()
        self._save_state()
        self.events.emit(
            "run_finished", status=status, reason=reason, steps_done=st.steps_done, steps_failed=st.steps_failed
        )
        return SoakResult(status, reason, st.steps_done, st.steps_failed)

    def crashed(self, exc: BaseException) -> SoakResult:
        """Record a runner error as a failed, resumable session (best effort: the disk may be full)."""
        return self.ended_early(f"runner error: {type(exc).__name__}: {exc}")

    def ended_early(self, reason: str) -> SoakResult:
        """Record a session that could not run (or crashed) as failed and resumable."""
        st = self.state
        st.status, st.reason, st.resumable, st.current, st.ended_at = "failed", reason, True, None, time.time()
        with contextlib.suppress(OSError):
            self._save_state()
        with contextlib.suppress(OSError):
            self.events.emit(
                "run_finished", status="failed", reason=reason, steps_done=st.steps_done, steps_failed=st.steps_failed
            )
        return SoakResult("failed", reason, st.steps_done, st.steps_failed)

    def session_env(self, session: Session) -> dict[str, str]:
        """The env a session's target runs with: serve.env, supplementary_env in that mode, the arm's env."""
        serve = self.plan.serve
        extra = serve.supplementary_env if session.mode == "supplementary" else {}
        return {**serve.env, **extra, **session.arm.env}

    def _runtime(self, session: Session) -> ServeRuntime:
        serve = self.plan.serve
        serve_dir = self.run_dir.serve_dir(session.arm.name, session.mode)
        env = self.session_env(session)
        if isinstance(serve, ExternalServe):
            return ExternalRuntime(serve.url)
        if isinstance(serve, DockerServe):
            return DockerRuntime(
                serve, env, run_id=self.state.run_id, arm=session.arm.name, mode=session.mode,
                serve_dir=serve_dir, resolve=self.loaded.resolve, owner=this_runner(),
            )  # fmt: skip
        return ProcessRuntime(
            self.loaded.serve_command(), env, serve_dir / "serve.log", serve_dir / "env", serve.host,
            run_id=self.state.run_id,
        )  # fmt: skip

    async def _session(self, session: Session) -> None:
        arm, mode = session.arm.name, session.mode
        todo = []
        for step in session.steps:
            if self.run_dir.is_done(step):
                self.events.emit("step_skipped", step=step.as_dict(), reason="DONE in an earlier session")
            else:
                todo.append(step)
        restarts = 0
        while todo and not self.abort.is_set() and not self.fatal:
            todo = await self._target_session(session, todo)
            if not todo:
                return
            restarts += 1
            if restarts > MAX_RESTARTS_PER_SESSION:
                why = f"not run: the serve target was restarted {MAX_RESTARTS_PER_SESSION} times in this session"
                self._fail_steps(todo, why)
                return
            self.events.emit(
                "serve_restarting", arm=arm, mode=mode, restart=restarts, remaining=[s.as_dict() for s in todo]
            )

    async def _target_session(self, session: Session, todo: list[StepKey]) -> list[StepKey]:
        """One serve target's life: start, verify, run steps; the steps left when it must be restarted."""
        arm, mode = session.arm.name, session.mode
        runtime = self.make_runtime(session)
        self._oom_kills_seen = 0  # the count belongs to this target
        serve = self.plan.serve
        if abort_pending(self.run_dir):  # asked for while the last target stopped: start nothing new
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self.abort.wait(), 2 * CONTROL_POLL_S)
        blocked = await self._unless_aborted(self._memory_recovered())
        if blocked:
            self._fail_steps(todo, blocked)
            return []
        if self.abort.is_set():
            return []
        self.events.emit("serve_starting", arm=arm, mode=mode, kind=runtime.kind, target=await runtime.inspect())
        # the memory alarm is watched for the target's whole life: loading a model is its biggest fill
        self._alarm = asyncio.create_task(self.guard.wait_alarm()) if self.guard else None
        try:
            try:
                await runtime.start()
            finally:
                self._register_target(runtime, arm, mode)
            ready = await self._unless_aborted(runtime.wait_ready(serve.ready_timeout_s))
            if ready is None:
                memory = self._memory_alarm(target_died=False, since=0.0)
                if memory:
                    self._fail_steps(todo, f"not run: {memory}")
                return []
            target = await runtime.inspect()
            record_target(self.run_dir, f"{arm}/{mode}", runtime.provenance())
            self._healthy[(arm, mode)] = True
            self.events.emit(
                "serve_ready", arm=arm, mode=mode, model=ready.model, waited_s=round(ready.waited_s, 3),
                pid=target.get("pid"), container=target.get("name"), base_url=runtime.base_url,
            )  # fmt: skip
            problem = await self._verify_env(session, runtime)
            if problem:
                self._fail_steps(todo, problem)
                return []
            for i, step in enumerate(todo):
                if self.abort.is_set():
                    return []
                outcome = await self._step(step, runtime, ready.model)
                self.state.current = None
                self._save_state()
                if outcome == "restart":  # a profiler incident killed the target: the rest run on a new one
                    return todo[i + 1 :]
                memory = self._memory_alarm(target_died=False, since=0.0)
                if memory and outcome != "target_died":
                    self._fail_steps(todo[i + 1 :], f"not run: {memory}")
                    return []
                if outcome == "target_died":
                    self._fail_steps(todo[i + 1 :], "not run: the serve target died in an earlier step")
                    return []
        except ServeError as exc:
            self.events.emit("serve_failed", arm=arm, mode=mode, reason=str(exc))
            self._fail_steps([s for s in todo if not self.run_dir.is_done(s)], f"serve target failed: {exc}")
        finally:
            if self._alarm is not None:
                self._alarm.cancel()
                self._alarm = None
            await self._stop_target(runtime, arm, mode)
        return []

    async def _memory_recovered(self) -> str | None:
        """Wait while the guard blocks restarts (memory below WARN after an action); a reason if it never clears."""
        if self.guard is None or not self.guard.restart_blocked():
            return None
        wait_s = self.plan.watchdog.restart_wait_s
        self.events.emit("restart_blocked", reason=self.guard.restart_blocked(), wait_s=wait_s)
        end = time.monotonic() + wait_s
        while time.monotonic() < end:
            await asyncio.sleep(1.0)
            if not self.guard.restart_blocked():
                self.events.emit("restart_allowed")
                return None
        return f"not started: {self.guard.restart_blocked()} (waited {wait_s:g} s)"

    def _register_target(self, runtime: ServeRuntime, arm: str, mode: str) -> None:
        """List the started target in targets.json so the guard can end it (it checks the label too)."""
        ref = None
        if isinstance(runtime, ProcessRuntime) and runtime.pid is not None:
            ref = TargetRef("process", arm, mode, pid=runtime.pid, start_ticks=process_start_ticks(runtime.pid))
        elif isinstance(runtime, DockerRuntime) and runtime.id is not None:
            ref = TargetRef("docker", arm, mode, container=runtime.id, socket=runtime.socket)
        write_targets(self.run_dir, [ref] if ref else [])

    async def _stop_target(self, runtime: ServeRuntime, arm: str, mode: str) -> None:
        """Stop the target; one that cannot be stopped ends the run (the next arm must not share the GPU)."""
        grace = self.plan.serve.stop_timeout_s
        if self.abort.is_set():  # an operator's abort must have the target down within 15 s
            grace = min(grace, ABORT_STOP_GRACE_S)
        try:
            ended = await runtime.stop(grace)
        except Exception as exc:  # ServeError, or a runtime bug: either way fail closed
            reason = str(exc) if isinstance(exc, ServeError) else f"{type(exc).__name__}: {exc}"
            self.fatal = f"the serve target of {arm}/{mode} could not be stopped: {reason}"
            self.events.emit("serve_stop_failed", arm=arm, mode=mode, reason=reason)
            return
        with contextlib.suppress(RunDirWriteError):  # a stale list only names a target that is gone
            write_targets(self.run_dir, [])
        self.events.emit("serve_stopped", arm=arm, mode=mode, how=ended.describe(), target=await runtime.inspect())

    async def _unless_aborted(self, work: Awaitable[T]) -> T | None:
        """Await `work`, or cancel it and return None as soon as an abort is requested or memory alarms."""
        task = asyncio.ensure_future(work)
        stop = asyncio.create_task(self.abort.wait())
        watched = {task, stop} | ({self._alarm} if self._alarm is not None else set())
        try:
            await asyncio.wait(watched, return_when=asyncio.FIRST_COMPLETED)
        finally:
            stop.cancel()
        if task.done():
            return task.result()
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        return None

    async def _verify_env(self, session: Session, runtime: ServeRuntime) -> str | None:
        """Compare the env the arm asked for with what the target reports; a reason when they differ."""
        expected = self.session_env(session)
        report = await fetch_target_report(runtime.base_url)
        reported = report.env
        mismatches = env_mismatches(expected, reported or {})
        unverified = sorted(k for k in expected if reported is None or k not in reported)
        write_json_atomic(
            self.run_dir.effective_env_path(session.arm.name),
            {
                "arm": session.arm.name,
                "mode": session.mode,
                "expected": redact_env(expected),
                "reported": redact_env(reported),
                "verified": reported is not None and not mismatches,
                "unverified_keys": unverified,
                "mismatches": mismatches,
                "kernel_checks": report.kernel_checks,
            },
        )
        arm = session.arm.name
        failed_checks = [c for c in report.kernel_checks or [] if c.get("passed") is not True]
        if failed_checks:  # measured anyway: the kernel-correctness gate rejects the arm in the report
            self.events.emit("kernel_checks_failed", arm=arm, mode=session.mode, failed=failed_checks)
        if reported is None:
            self.events.emit("env_unverified", arm=arm, reason="the target does not report /debug/config")
        elif mismatches:
            self.events.emit("env_mismatch", arm=arm, mismatches=mismatches, reported=redact_env(reported))
            return "the target does not run the arm's env: " + "; ".join(mismatches)
        else:
            self.events.emit("env_verified", arm=arm, reported=redact_env(reported), unverified_keys=unverified)
        return None

    async def _step(self, step: StepKey, runtime: ServeRuntime, model: str) -> StepOutcome:
        phase = self.plan.phase(step.phase)
        try:
            workload = prepare(phase, self.loaded, arrival_seed=phase.seed or 0)
        except DatasetError as exc:
            self._fail_steps([step], str(exc))
            return "failed"
        planned = sum(len(c.turns) for c in workload.conversations)
        if phase.limit_requests is not None:
            planned = min(planned, phase.limit_requests)
        step_dir = self.run_dir.fresh_step_dir(step)
        self.state.current = step.as_dict()
        self._save_state()
        started = time.time()
        self.events.emit(
            "step_started", step=step.as_dict(), kind=phase.kind, requests=planned,
            concurrency=workload.arrivals.concurrency, open_loop=workload.arrivals.offsets is not None,
        )  # fmt: skip
        if phase.profile:
            refused = await self._start_profiler(step, runtime, step_dir)
            if refused:
                self._fail_steps([step], refused)
                return "failed"
        requests = JsonlWriter(step_dir / "requests.jsonl")
        scrapes = JsonlWriter(step_dir / SERVER_METRICS_FILE)
        progress = _Progress(self.events, step, planned)
        samples: list[dict] = []

        def on_record(rec: RequestRecord) -> None:
            requests.append(rec.as_dict())
            progress.add(rec)

        def on_sample(sample: dict) -> None:
            samples.append(sample)
            scrapes.append(sample)

        stop_scraping = asyncio.Event()
        sampler = None
        if phase.metrics_interval_s is not None:
            scraper = MetricsSampler(runtime.base_url + "/metrics", on_sample, interval_s=phase.metrics_interval_s)
            sampler = asyncio.create_task(scraper.run(stop_scraping))
        paused_before = self.gate.paused_s()
        replay_task = asyncio.create_task(
            replay(
                runtime.base_url, model, workload.conversations, workload.shape, workload.arrivals,
                on_record, self.abort, limit_requests=phase.limit_requests, gate=self.gate,
            )
        )  # fmt: skip
        replay_task.add_done_callback(_retrieve)  # its error is read below, on every path
        died = asyncio.create_task(runtime.wait_exit())
        health = asyncio.create_task(
            watch_health(runtime.probe, partial(self._health_changed, step), stop_scraping,
                         self.plan.serve.health_interval_s, self._healthy.get((step.arm, step.mode), True))
        )  # fmt: skip
        deadline = asyncio.create_task(self._deadline(phase.deadline_s, paused_before))
        try:
            watched = {replay_task, died, deadline} | ({self._alarm} if self._alarm else set())
            await asyncio.wait(watched, return_when=asyncio.FIRST_COMPLETED)
        finally:
            deadline.cancel()
            if not replay_task.done():
                replay_task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await replay_task
            stop_scraping.set()
            if sampler is not None:
                await sampler
            health.cancel()  # a probe in flight against a wedged target is not worth waiting for
            health_error = (await asyncio.gather(health, return_exceptions=True))[0]
            closing = [_close_quietly(requests), _close_quietly(scrapes)]
        if not replay_task.cancelled() and isinstance(replay_task.exception(), RunDirWriteError):
            raise replay_task.exception()  # type: ignore[misc]
        for error in (*closing, health_error):
            if isinstance(error, Exception):  # health_error may be the CancelledError of its own stop
                raise error
        ended = await self._target_ended(died, replay_task)
        if ended is not None:
            self._note_oom_kills(step, await runtime.inspect())
        memory = self._memory_alarm(target_died=ended is not None, since=started)
        if memory is not None and (replay_task.cancelled() or ended is not None):  # a finished replay stands
            self._fail_steps([step], memory)
            return "target_died"
        if replay_task.cancelled():
            if ended is not None:
                self._fail_steps([step], f"the serve target {ended.describe()} during the step; see its serve.log")
                return "target_died"
            self._fail_steps([step], f"step passed its deadline of {phase.deadline_s:g} s")
            return "failed"
        outcome = replay_task.result()
        profile = None
        if phase.profile and outcome.aborted:  # an abort must be quick: the target is stopped, not its profiler
            profile = ProfileRecord("lost", "the run was aborted before stop_profile")
        elif phase.profile and ended is None:
            profile = await self._stop_profiler(step, phase, runtime)
        target = await runtime.inspect()
        if ended is None:
            self._note_oom_kills(step, target)
        slo = Slo(phase.slo_ttft_ms, phase.slo_tpot_ms, phase.slo_e2el_ms)
        stats = phase_stats(outcome.records, outcome.wall_s, phase.percentiles, slo)
        record = {
            "step": step.as_dict(),
            "phase": phase.model_dump(),
            "started_at": started,
            "ended_at": time.time(),
            "aborted": outcome.aborted,
            "paused_s": round(self.gate.paused_s() - paused_before, 3),  # included in the wall time
            "target": target,
            "target_ended": ended.describe() if ended else None,
            "profile": profile.as_dict() if profile else None,
            "stats": stats.as_dict(),
            "server_metrics": summarize_metrics(samples) if sampler is not None else None,
            **evaluate(phase, self.loaded, outcome.records, step_dir),
        }
        write_json_atomic(step_dir / "phase.json", record)
        if outcome.aborted:
            self.events.emit("step_aborted", step=step.as_dict(), completed=stats.requests)
            return "aborted"
        if ended is not None:
            self._fail_steps([step], f"the serve target {ended.describe()} during the step; see its serve.log")
            return "target_died"
        lost = profile is not None and profile.status == "lost"
        if stats.ok == 0:
            first = next((r.error for r in outcome.records if r.error), "no request was sent")
            self._fail_steps([step], f"no request succeeded; first error: {first}")
            return "restart" if lost else "failed"
        self.run_dir.mark_done(step, {"stats": stats.as_dict()})
        self.state.steps_done += 1
        self._save_state()
        extras = {k: record[k] for k in ("gsm8k", "coherence") if k in record}
        self.events.emit("step_finished", step=step.as_dict(), stats=stats.as_dict(), **extras)
        return "restart" if lost else "done"

    def _profiler_refused(self) -> str | None:
        """Why the profiler must not be started or stopped now: memory at WARN or worse, or unknown."""
        if self.guard is None:
            return None
        status = self.guard.status()
        if status is None:
            return "the guard's status cannot be read"
        if status.get("level") != "ok":
            return f"memory at {str(status.get('level')).upper()}: {status.get('reason')}"
        return None

    async def _start_profiler(self, step: StepKey, runtime: ServeRuntime, step_dir) -> str | None:
        """Start the target's profiler if memory allows; a reason for failing the step otherwise."""
        refused = self._profiler_refused()
        if refused:
            return f"profiler not started: {refused}"
        try:
            answer = await start_profile(runtime.base_url, str(step_dir / "profile"))
        except ProfilerError as exc:
            return f"profiler could not start: {exc}"
        self.events.emit("profile_started", step=step.as_dict(), answer=answer)
        return None

    async def _stop_profiler(self, step: StepKey, phase, runtime: ServeRuntime) -> ProfileRecord:
        """Stop the profiler under its hard deadline, never in an emergency; kill the target if it will not stop.

        A lost trace does not undo the step's measurements; the target is killed and the session
        restarts it (verified) before the next step.
        """
        refused = self._profiler_refused()
        if refused:
            record = ProfileRecord("lost", f"stop_profile not called: {refused}; the target was killed instead")
        else:
            stop = asyncio.create_task(stop_profile(runtime.base_url, phase.profile_stop_timeout_s))
            watched = {stop} | ({self._alarm} if self._alarm is not None else set())
            await asyncio.wait(watched, return_when=asyncio.FIRST_COMPLETED)
            if stop.done() and stop.exception() is None:
                answer, took = stop.result()
                record = ProfileRecord("captured", trace=answer.get("trace"), stop_s=round(took, 3))
                self.events.emit("profile_captured", step=step.as_dict(), **record.as_dict())
                return record
            if stop.done():
                reason = str(stop.exception())
            else:
                stop.cancel()
                reason = f"memory watchdog alarm during stop_profile: {self._memory_alarm(False, 0.0)}"
            record = ProfileRecord("lost", f"{reason}; the target was killed")
        self.events.emit("profile_lost", step=step.as_dict(), **record.as_dict())
        try:
            ended = await runtime.kill()
            self.events.emit("serve_killed", arm=step.arm, mode=step.mode, how=ended.describe(), reason=record.reason)
        except ServeError as exc:
            self.fatal = f"the serve target of {step.arm}/{step.mode} could not be killed after a lost profile: {exc}"
        return record

    def _memory_alarm(self, target_died: bool, since: float) -> str | None:
        """Why the memory watchdog stopped this target, or None.

        ABORT (or KILL) seen by the alarm: the runner stops the target. A target that died is the
        watchdog's doing only if the guard recorded killing this arm's target after `since`.
        """
        alarm = self._alarm
        status = alarm.result() if alarm is not None and alarm.done() and not alarm.cancelled() else None
        if status is None and target_died and self.guard is not None:
            kill = (self.guard.status() or {}).get("last_kill") or {}
            current = self.state.current or {}
            if kill.get("t", 0) >= since and kill.get("arm") == current.get("arm"):
                status = {"level": "kill", "reason": f"{kill.get('reason')} ({kill.get('outcome')})"}
        if status is None:
            return None
        level = str(status.get("level", "?")).upper()
        return f"memory watchdog {level}: {status.get('reason')}; `--resume` repeats this step once memory recovers"

    async def _target_ended(self, died: asyncio.Task[ExitInfo], replay_task: asyncio.Task) -> ExitInfo | None:
        """How the target ended during the step, or None if it still runs.

        Failed requests are often the first sign of a dead target, before its watcher sees it
        exit: then the watcher gets TARGET_DEATH_GRACE_S to confirm, so the step names the cause.
        """
        failures = replay_task.cancelled() or any(r.error for r in replay_task.result().records)
        if failures and not died.done():
            await asyncio.wait({died}, timeout=TARGET_DEATH_GRACE_S)
        if not died.done():
            died.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await died
            return None
        return died.result() if died.exception() is None else None

    def _health_changed(self, step: StepKey, result: ProbeResult) -> None:
        """The serve target's /health flipped during `step`: an event the console and the evidence show."""
        self._healthy[(step.arm, step.mode)] = result.healthy
        latency_ms = None if result.latency_s is None else round(result.latency_s * 1000, 1)
        self.events.emit("serve_health", arm=step.arm, mode=step.mode, step=step.as_dict(), healthy=result.healthy,
                         latency_ms=latency_ms, detail=result.detail)  # fmt: skip

    def _note_oom_kills(self, step: StepKey, target: dict) -> None:
        """An event when the target's cgroup counted new OOM kills (a worker can die while the server lives)."""
        kills = target.get("oom_kills") or 0
        new = kills - self._oom_kills_seen
        if new > 0 or target.get("oom_killed"):
            self._oom_kills_seen = kills
            self.events.emit(
                "serve_oom", step=step.as_dict(), new_oom_kills=new, cgroup_oom_kills=kills,
                oom_killed=target.get("oom_killed"), container=target.get("name"),
            )  # fmt: skip

    def _fail_steps(self, steps: list[StepKey], reason: str) -> None:
        for step in steps:
            self.failed.append((step, reason))
            self.state.steps_failed += 1
            self.events.emit("step_failed", step=step.as_dict(), reason=reason)
        self._save_state()

    def _save_state(self) -> None:
        self.run_dir.write_state(self.state)


def _retrieve(task: asyncio.Task) -> None:
    """Mark a task's exception as seen (the step reads and reports it itself)."""
    if not task.cancelled():
        task.exception()


def _close_quietly(writer: JsonlWriter) -> RunDirWriteError | None:
    """Close a writer; the error instead of raising it (the step decides what it means)."""
    try:
        writer.close()
    except RunDirWriteError as exc:
        return exc
    return None


class _Progress:
    """Turns request completions into `step_progress` events, at most one per PROGRESS_EVERY_S."""

    def __init__(self, events: EventLog, step: StepKey, total: int) -> None:
        self.events, self.step, self.total = events, step, total
        self.records: list[RequestRecord] = []
        self.t0 = time.perf_counter()
        self.last = 0.0

    def add(self, rec: RequestRecord) -> None:
        """Count one finished request."""
        self.records.append(rec)
        self.flush(force=len(self.records) == self.total)

    def flush(self, force: bool = False) -> None:
        """Emit a progress event if one is due (or `force`)."""
        now = time.perf_counter()
        if not force and now - self.last < PROGRESS_EVERY_S:
            return
        self.last = now
        stats = phase_stats(self.records, now - self.t0)
        self.events.emit(
            "step_progress",
            step=self.step.as_dict(),
            total=self.total,
            completed=stats.requests,
            failed=stats.failed,
            output_tokens=stats.output_tokens,
            ttft_p50_ms=stats.ttft_p50_ms,
            ttft_p95_ms=stats.ttft_p95_ms,
            tpot_p50_ms=stats.tpot_p50_ms,
            tpot_p95_ms=stats.tpot_p95_ms,
            itl_p50_ms=stats.itl_p50_ms,
            itl_p95_ms=stats.itl_p95_ms,
            errors=stats.errors,
        )
