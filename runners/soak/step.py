"""One step against a running serve target: replay under a deadline while the target, its /health, its
/metrics and the memory guard are watched; then a pure `judge` of what happened.

The step's evidence (requests.jsonl, server_metrics.jsonl, phase.json) is written whatever the verdict;
only a replay that finished with at least one successful request earns the DONE marker.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from dataclasses import dataclass, field, replace
from typing import Literal

import httpx

from runners.plan.load import LoadedPlan
from runners.plan.steps import StepKey
from runners.replay.dispatch import replay
from runners.replay.dispatch_gate import DispatchGate
from runners.replay.measurement_check import DISTORTED, MeasurementBounds, MeasurementCheck, cross_check
from runners.replay.metrics import Slo, phase_stats
from runners.replay.pauses import account_pauses
from runners.replay.prompts import DatasetError
from runners.replay.records import RequestRecord
from runners.replay.server_latency import ServerLatency
from runners.replay.server_metrics import MetricsSampler
from runners.replay.server_metrics import summarize as summarize_metrics
from runners.replay.token_lengths import TOKENIZE_DEADLINE_S, target_limit
from runners.replay.usage_probe import UsageProbe, probe_continuous_usage
from runners.replay.workloads import evaluate, prepare
from runners.run.event_types import MeasurementDistorted, ServeHealth, ServeOom, StepAborted, StepStarted
from runners.run.events import EventLog
from runners.run.files import JsonlWriter, RunDirWriteError, write_json_atomic
from runners.run.rundir import RunDir
from runners.serve.health_watch import watch_health
from runners.serve.runtime import ExitInfo, ProbeResult, ServeRuntime
from runners.soak.ledger import RunLedger
from runners.soak.memory_watch import MemoryWatch
from runners.soak.profiler import ProfileRecord
from runners.soak.profiler_rules import StepProfiler
from runners.soak.progress import ProgressReporter
from runners.soak.region_timings import RegionDump
from runners.soak.server_latency_probe import StepLatencyProbe
from runners.soak.stall_watch import StallWatch, stall_s_of, stalled_step_record

TARGET_DEATH_GRACE_S = 2.0
SERVER_METRICS_FILE = "server_metrics.jsonl"
StepOutcome = Literal["done", "failed", "aborted", "target_died", "restart"]


@dataclass(frozen=True)
class StepObservation:
    """What happened during a step, as `judge` needs it (no I/O, no tasks)."""

    replay_finished: bool  # False: cut short by the deadline, the target's end or a memory alarm
    aborted: bool = False  # the replay stopped dispatch on an abort request
    ok_requests: int = 0
    first_error: str | None = None
    target_ended: str | None = None  # how the target ended during the step (ExitInfo.describe), None if it runs
    memory: str | None = None  # why the memory watchdog stopped the target, None if it did not
    profile_killed: bool = False  # the target was killed because its profiler would not stop
    deadline_s: float = 0.0
    stall: str | None = None  # why the stall watch killed the target (StallIncident.reason), None if it did not


@dataclass(frozen=True)
class StepJudgement:
    """The step's verdict: what the session does next, and whether the step failed (and why) or is DONE."""

    outcome: StepOutcome
    failure: str | None = None
    done: bool = False


def judge(obs: StepObservation) -> StepJudgement:
    """The verdict on a step, in this order:

    a memory alarm that cut the replay short or ended the target fails the step (target_died); so
    does a stall (the stall watch killed the target), in its words; a replay cut short fails it as
    the target's death, else as the deadline; an abort is `aborted`; a target that died after the
    replay finished still fails it; no successful request fails it; else DONE. A target killed over
    its profiler's stop asks for a new target (`restart`) for the steps that follow.
    """
    died = f"the serve target {obs.target_ended} during the step; see its serve.log"
    if obs.memory is not None and (not obs.replay_finished or obs.target_ended is not None):
        return StepJudgement("target_died", obs.memory)
    if obs.stall is not None:
        return StepJudgement("target_died", obs.stall)
    if not obs.replay_finished:
        if obs.target_ended is not None:
            return StepJudgement("target_died", died)
        return StepJudgement("failed", f"step passed its deadline of {obs.deadline_s:g} s")
    if obs.aborted:
        return StepJudgement("aborted")
    if obs.target_ended is not None:
        return StepJudgement("target_died", died)
    if obs.ok_requests == 0:
        first = obs.first_error or "no request was sent"
        return StepJudgement(
            "restart" if obs.profile_killed else "failed", f"no request succeeded; first error: {first}"
        )
    return StepJudgement("restart" if obs.profile_killed else "done", done=True)


@dataclass
class StepContext:
    """What every step of a session shares."""

    run_dir: RunDir
    loaded: LoadedPlan
    events: EventLog
    ledger: RunLedger
    abort: asyncio.Event
    gate: DispatchGate
    memory: MemoryWatch
    healthy: bool = True  # the target's last /health answer, carried from step to step
    oom_kills_seen: int = 0  # the target's cgroup OOM kills already reported
    token_counts: dict[bytes, int] = field(default_factory=dict)  # /tokenize answers of this target, by body
    usage_probes: dict[str, UsageProbe] = field(default_factory=dict)  # per endpoint, once per target


class StepRun:
    """One step: prepare the workload, replay it against `runtime`, write its evidence, judge it."""

    def __init__(self, ctx: StepContext, step: StepKey, runtime: ServeRuntime, model: str) -> None:
        self.ctx, self.step, self.runtime, self.model = ctx, step, runtime, model
        self.phase = ctx.loaded.plan.phase(step.phase)

    async def run(self) -> StepOutcome:
        """Run the step and record its verdict (DONE marker or `step_failed`); the outcome for the session."""
        ctx, step, phase = self.ctx, self.step, self.phase
        try:
            async with httpx.AsyncClient(timeout=httpx.Timeout(TOKENIZE_DEADLINE_S)) as client:
                limit = await target_limit(client, self.runtime.base_url, self.model, ctx.token_counts)
                workload = await prepare(phase, ctx.loaded, arrival_seed=phase.seed or 0, limit=limit)
        except DatasetError as exc:
            ctx.ledger.fail([step], str(exc))
            return "failed"
        planned = sum(len(c.turns) for c in workload.conversations)
        if phase.limit_requests is not None:
            planned = min(planned, phase.limit_requests)
        probe = await self._usage_probe()
        shape = replace(workload.shape, continuous_usage=probe.continuous_usage)
        step_dir = ctx.run_dir.fresh_step_dir(step)
        self.profiler = StepProfiler(self.runtime, ctx.events, ctx.memory, step, step_dir / "profile")
        ctx.ledger.step_started(step)
        started = time.time()
        ctx.events.emit(StepStarted(step, phase.kind, planned, workload.arrivals.concurrency,
                                    open_loop=workload.arrivals.offsets is not None))  # fmt: skip
        if phase.profile:
            refused = await self.profiler.start()
            if refused:
                ctx.ledger.fail([step], refused)
                return "failed"
        region_dump = RegionDump.for_step(phase, self.runtime, step_dir, ctx.events, step)  # region timings
        await region_dump.arm()  # the trigger, before the replay
        requests = JsonlWriter(step_dir / "requests.jsonl")
        scrapes = JsonlWriter(step_dir / SERVER_METRICS_FILE)
        progress = ProgressReporter(ctx.events, step, planned)
        samples: list[dict] = []
        stall_watch = StallWatch(stall_s_of(phase), scraping=phase.metrics_interval_s is not None)

        def on_record(rec: RequestRecord) -> None:
            requests.append(rec.as_dict())
            progress.add(rec)

        first_sample = asyncio.Event()

        def on_sample(sample: dict) -> None:
            samples.append(sample)
            scrapes.append(sample)
            stall_watch.on_sample(sample)
            first_sample.set()

        stop_scraping = asyncio.Event()
        sampler = None
        if phase.metrics_interval_s is not None:
            scraper = MetricsSampler(self.runtime.base_url + "/metrics", on_sample, interval_s=phase.metrics_interval_s)
            sampler = asyncio.create_task(scraper.run(stop_scraping))
        latency = StepLatencyProbe(self.runtime.base_url + "/metrics")
        await latency.start()
        if sampler is not None:  # vLLM renders /metrics on the loop that streams: keep it off the first requests
            await _first_sample(first_sample, sampler, scraper.deadline_s)
        paused_before = ctx.gate.paused_s()
        replay_task = asyncio.create_task(
            replay(
                self.runtime.base_url, self.model, workload.conversations, shape, workload.arrivals,
                on_record, ctx.abort, limit_requests=phase.limit_requests, gate=ctx.gate,
                activity=stall_watch.activity,
            )
        )  # fmt: skip
        replay_task.add_done_callback(_retrieve)  # its error is read below, on every path
        died = asyncio.create_task(self.runtime.wait_exit())
        health = asyncio.create_task(
            watch_health(self.runtime.probe, self._health_changed, stop_scraping,
                         ctx.loaded.plan.serve.health_interval_s, ctx.healthy)
        )  # fmt: skip
        deadline = asyncio.create_task(_deadline(phase.deadline_s, ctx.gate, paused_before))
        stalled = asyncio.create_task(stall_watch.watch())
        incident = None
        try:
            watched = {replay_task, died, deadline, stalled} | ctx.memory.tasks()
            await asyncio.wait(watched, return_when=asyncio.FIRST_COMPLETED)
            if stalled.done():  # a wedged target: killed now, the step fails as a dead target's would
                incident = await stall_watch.kill(stalled.result(), self.runtime, ctx.events, ctx.ledger, step)
        finally:
            stalled.cancel()
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
        ended = await _target_ended(died, replay_task)
        if ended is not None:
            self._note_oom_kills(await self.runtime.inspect())
        memory = ctx.memory.reason(target_died=ended is not None, since=started, arm=step.arm)
        finished = not replay_task.cancelled()
        stall = incident.reason() if incident is not None else None
        if incident is not None:  # the stall's evidence: requests.jsonl and the scrapes are beside it
            target = await self.runtime.inspect()
            write_json_atomic(step_dir / "phase.json", stalled_step_record(step, phase, started, incident, target,
                                                                           samples))  # fmt: skip
        if not finished or stall or (memory is not None and ended is not None):
            verdict = judge(StepObservation(finished, target_ended=_describe(ended), memory=memory,
                                            deadline_s=phase.deadline_s, stall=stall))  # fmt: skip
            ctx.ledger.fail([step], verdict.failure or "")
            await region_dump.discard()  # region timings: no trigger left for a later target
            return verdict.outcome
        outcome = replay_task.result()
        profile: ProfileRecord | None = None
        if phase.profile and outcome.aborted:
            profile = StepProfiler.lost_to_abort()
        elif phase.profile and ended is None:
            profile = await self.profiler.stop(phase.profile_stop_timeout_s)
            if self.profiler.kill_failed:
                ctx.ledger.fail_run(self.profiler.kill_failed)
        region_timings = await region_dump.collect(  # region timings: after the profiler stop
            kernels=((profile.kernels or {}).get("rows") if profile else None), abort=ctx.abort,
            ended=_describe(ended), aborted=outcome.aborted, profile_lost=self.profiler.killed,
        )  # fmt: skip
        target = await self.runtime.inspect()
        if ended is None:
            self._note_oom_kills(target)
        slo = Slo(phase.slo_ttft_ms, phase.slo_tpot_ms, phase.slo_e2el_ms)
        pause = account_pauses(outcome.pauses, outcome.records)
        wall_s = outcome.wall_s - pause.idle_s  # time the target idled only because of a pause is not the step's
        stats = phase_stats(outcome.records, wall_s, phase.percentiles, slo)
        server = await latency.finish(stats.ok)
        client = stats  # the server's histograms saw every request: the cross-check compares all of them
        if stats.latency_excluded:
            client = phase_stats(outcome.records, wall_s, phase.percentiles, slo, exclude_paused=False)
        check = self._check_measurement(client.distributions, server)
        record = {
            "step": step.as_dict(),
            "phase": phase.model_dump(),
            "started_at": started,
            "ended_at": time.time(),
            "aborted": outcome.aborted,
            "paused_s": round(pause.paused_s, 3),  # dispatch held during the replay (runners/replay/pauses.py)
            "pause": pause.as_dict(),  # its idle part is left out of stats.wall_s
            "wall_clock_s": round(outcome.wall_s, 3),  # the replay's wall time, pauses included
            "target": target,
            "target_ended": _describe(ended),
            "profile": profile.as_dict() if profile else None,
            "prompt_filter": workload.prompt_filter,
            "usage_probe": probe.as_dict(),  # whether requests asked for usage on every chunk
            "itl_basis": stats.itl_basis,
            "stats": stats.as_dict(),
            "server_metrics": summarize_metrics(samples) if sampler is not None else None,
            "server_latency": server.as_dict(),
            "measurement": check.as_dict(),
            "region_timings": region_timings,
            **evaluate(phase, ctx.loaded, outcome.records, step_dir),
        }
        write_json_atomic(step_dir / "phase.json", record)
        if check.status == DISTORTED:
            ctx.events.emit(MeasurementDistorted(step, check.reason or "", record["measurement"]["comparisons"]))
        verdict = judge(
            StepObservation(
                True, aborted=outcome.aborted, ok_requests=stats.ok,
                first_error=next((r.error for r in outcome.records if r.error), None),
                target_ended=_describe(ended), memory=memory,
                profile_killed=self.profiler.killed, deadline_s=phase.deadline_s,
            )
        )  # fmt: skip
        if verdict.outcome == "aborted":
            ctx.events.emit(StepAborted(step, stats.requests))
        elif verdict.done:
            extras = {k: record[k] for k in ("gsm8k", "coherence") if k in record}
            if pause.paused_s:
                extras["pause"] = record["pause"]
            ctx.ledger.step_done(step, stats.as_dict(), extras)
        else:
            ctx.ledger.fail([step], verdict.failure or "")
        return verdict.outcome

    async def _usage_probe(self) -> UsageProbe:
        """Whether the target sends usage on every chunk of the phase's endpoint: probed once per target."""
        endpoint = self.phase.endpoint
        probe = self.ctx.usage_probes.get(endpoint)
        if probe is None:
            probe = await probe_continuous_usage(self.runtime.base_url, self.model, endpoint)
            self.ctx.usage_probes[endpoint] = probe
        return probe

    def _check_measurement(self, client: dict, server: ServerLatency) -> MeasurementCheck:
        """Client vs server TTFT/ITL means under the plan's bounds."""
        bounds = MeasurementBounds.from_gates(self.ctx.loaded.plan.gates)
        return cross_check(client["ttft_ms"].mean, client["itl_chunk_ms"].mean, server, bounds)

    def _health_changed(self, result: ProbeResult) -> None:
        """The serve target's /health flipped during the step: an event the console and the evidence show."""
        self.ctx.healthy = result.healthy
        step = self.step
        latency_ms = None if result.latency_s is None else round(result.latency_s * 1000, 1)
        self.ctx.events.emit(ServeHealth(step.arm, step.mode, step, result.healthy, latency_ms, result.detail))

    def _note_oom_kills(self, target: dict) -> None:
        """An event when the target's cgroup counted new OOM kills (a worker can die while the server lives)."""
        kills = target.get("oom_kills") or 0
        new = kills - self.ctx.oom_kills_seen
        if new > 0 or target.get("oom_killed"):
            self.ctx.oom_kills_seen = kills
            self.ctx.events.emit(ServeOom(self.step, new, kills, target.get("oom_killed"), target.get("name")))


async def _deadline(deadline_s: float, gate: DispatchGate, paused_before: float) -> None:
    """Return once a step has run `deadline_s` seconds, not counting time dispatch was paused."""
    started = time.monotonic()
    while True:
        ran = time.monotonic() - started - (gate.paused_s() - paused_before)
        if ran >= deadline_s:
            return
        await asyncio.sleep(min(deadline_s - ran, 1.0))


async def _target_ended(died: asyncio.Task[ExitInfo], replay_task: asyncio.Task) -> ExitInfo | None:
    """How the target ended during the step, or None if it still runs.

    Failed requests are often the first sign of a dead target, before its watcher sees it exit: then
    the watcher gets TARGET_DEATH_GRACE_S to confirm, so the step names the cause.
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


async def _first_sample(seen: asyncio.Event, sampler: asyncio.Task, deadline_s: float) -> None:
    """Wait (at most one scrape deadline) for the sampler's first scrape, or its end."""
    waiter = asyncio.create_task(seen.wait())
    await asyncio.wait({waiter, sampler}, timeout=deadline_s, return_when=asyncio.FIRST_COMPLETED)
    waiter.cancel()


def _describe(ended: ExitInfo | None) -> str | None:
    return ended.describe() if ended is not None else None


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
