"""One step against a running serve target: replay under a deadline while the target, its /health, its
/metrics and the memory guard are watched (`step_watch.StepWatch`); then a pure `judge` of what happened.

The step's evidence (requests.jsonl, server_metrics.jsonl, phase.json) is written whatever the verdict;
only a replay that finished with at least one successful request earns the DONE marker.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Literal

import httpx

from runners.plan.steps import StepKey
from runners.replay.dispatch import ReplayOutcome
from runners.replay.measurement_check import DISTORTED, MeasurementBounds, MeasurementCheck, cross_check
from runners.replay.metrics import PhaseStats, Slo, phase_stats
from runners.replay.pauses import PauseAccount, account_pauses
from runners.replay.prompts import DatasetError
from runners.replay.server_latency import ServerLatency
from runners.replay.server_metrics import summarize as summarize_metrics
from runners.replay.token_lengths import TOKENIZE_DEADLINE_S, target_limit
from runners.replay.usage_probe import UsageProbe, probe_continuous_usage
from runners.replay.workloads import Workload, evaluate, prepare
from runners.run.event_types import MeasurementDistorted, ServeHealth, ServeOom, StepAborted, StepStarted
from runners.run.files import write_json_atomic
from runners.serve.runtime import ExitInfo, ProbeResult, ServeRuntime
from runners.soak.phase_record import PhaseRecord
from runners.soak.profiler import ProfileRecord
from runners.soak.profiler_rules import StepProfiler
from runners.soak.progress import ProgressReporter
from runners.soak.region_timings import RegionDump
from runners.soak.server_latency_probe import StepLatencyProbe
from runners.soak.stall_watch import StallIncident, stalled_step_record
from runners.soak.step_context import StepContext
from runners.soak.step_watch import StepWatch

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


class StepRun:
    """One step: prepare the workload, replay it against `runtime`, write its evidence, judge it."""

    def __init__(self, ctx: StepContext, step: StepKey, runtime: ServeRuntime, model: str) -> None:
        self.ctx, self.step, self.runtime, self.model = ctx, step, runtime, model
        self.phase = ctx.loaded.plan.phase(step.phase)

    async def run(self) -> StepOutcome:
        """Run the step and record its verdict (DONE marker or `step_failed`); the outcome for the session."""
        ctx, step, phase = self.ctx, self.step, self.phase
        try:
            workload = await self._prepare()
        except DatasetError as exc:
            ctx.ledger.fail([step], str(exc))
            return "failed"
        planned = _planned(workload, phase.limit_requests)
        probe = await self._usage_probe()
        workload = replace(workload, shape=replace(workload.shape, continuous_usage=probe.continuous_usage))
        step_dir = ctx.run_dir.fresh_step_dir(step)
        started = self._begin(workload, planned, step_dir)
        if phase.profile and (refused := await self.profiler.start()):
            ctx.ledger.fail([step], refused)
            return "failed"
        region_dump = RegionDump.for_step(phase, self.runtime, step_dir, ctx.events, step)  # region timings
        await region_dump.arm()  # the trigger, before the replay
        progress = ProgressReporter(ctx.events, step, planned)
        async with StepWatch(ctx, self.runtime, self.model, phase, workload, step_dir, progress,
                             self._health_changed) as watch:  # fmt: skip
            incident = await self._first_end(watch)
        if watch.ended is not None:
            self._note_oom_kills(await self.runtime.inspect())
        memory = ctx.memory.reason(target_died=watch.ended is not None, since=started, arm=step.arm)
        if incident is not None:  # the stall's evidence: requests.jsonl and the scrapes are beside it
            target = await self.runtime.inspect()
            write_json_atomic(step_dir / "phase.json", stalled_step_record(step, phase, started, incident, target,
                                                                           watch.samples))  # fmt: skip
        if not watch.finished or incident is not None or (memory is not None and watch.ended is not None):
            return await self._cut_short(watch, incident, memory, region_dump)
        return await self._finished(watch, workload, probe, started, step_dir, region_dump, memory)

    def _begin(self, workload: Workload, planned: int, step_dir: Path) -> float:
        """The step starts: its profiler, the ledger's and the events' word of it; when it started (wall clock)."""
        self.profiler = StepProfiler(self.runtime, self.ctx.events, self.ctx.memory, self.step, step_dir / "profile")
        self.ctx.ledger.step_started(self.step)
        started = time.time()
        arrivals = workload.arrivals
        self.ctx.events.emit(StepStarted(self.step, self.phase.kind, planned, arrivals.concurrency,
                                         open_loop=arrivals.offsets is not None))  # fmt: skip
        return started

    async def _first_end(self, watch: StepWatch) -> StallIncident | None:
        """Wait for the first end among the watched; a stall kills the target now (the step fails as a dead
        target's would) and is the step's incident."""
        seen = await watch.first_end()
        if seen is None:
            return None
        return await watch.stall_watch.kill(seen, self.runtime, self.ctx.events, self.ctx.ledger, self.step)

    async def _cut_short(
        self, watch: StepWatch, incident: StallIncident | None, memory: str | None, region_dump: RegionDump
    ) -> StepOutcome:
        """A replay cut short (its deadline, its target's end, a stall, a memory alarm) or a target lost to
        memory: the step fails, and the region timings' trigger goes."""
        stall = incident.reason() if incident is not None else None
        verdict = judge(StepObservation(watch.finished, target_ended=_describe(watch.ended), memory=memory,
                                        deadline_s=self.phase.deadline_s, stall=stall))  # fmt: skip
        self.ctx.ledger.fail([self.step], verdict.failure or "")
        await region_dump.discard()  # region timings: no trigger left for a later target
        return verdict.outcome

    async def _prepare(self) -> Workload:
        """The phase's workload, its prompts counted against the target's max_model_len; DatasetError if bad."""
        async with httpx.AsyncClient(timeout=httpx.Timeout(TOKENIZE_DEADLINE_S)) as client:
            limit = await target_limit(client, self.runtime.base_url, self.model, self.ctx.token_counts)
            return await prepare(self.phase, self.ctx.loaded, arrival_seed=self.phase.seed or 0, limit=limit)

    async def _finished(
        self,
        watch: StepWatch,
        workload: Workload,
        probe: UsageProbe,
        started: float,
        step_dir: Path,
        region_dump: RegionDump,
        memory: str | None,
    ) -> StepOutcome:
        """A replay that finished: stop the profiler, collect region timings, measure, write phase.json, judge."""
        ctx, step, phase, ended = self.ctx, self.step, self.phase, watch.ended
        outcome = watch.outcome()
        profile = await self._stop_profiler(outcome.aborted, ended)
        region_timings = await region_dump.collect(  # region timings: after the profiler stop
            kernels=((profile.kernels or {}).get("rows") if profile else None), abort=ctx.abort,
            ended=_describe(ended), aborted=outcome.aborted, profile_lost=self.profiler.killed,
        )  # fmt: skip
        target = await self.runtime.inspect()
        if ended is None:
            self._note_oom_kills(target)
        pause, stats, server, check = await self._measure(outcome, watch.latency)
        record = PhaseRecord(
            step=step, phase=phase, started_at=started, ended_at=time.time(), outcome=outcome, pause=pause,
            target=target, target_ended=_describe(ended), profile=profile, prompt_filter=workload.prompt_filter,
            usage_probe=probe, stats=stats, server_metrics=summarize_metrics(watch.samples) if watch.scraping else None,
            server_latency=server, measurement=check, region_timings=region_timings,
            kind_results=evaluate(phase, ctx.loaded, outcome.records, step_dir),
        ).as_dict()  # fmt: skip
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
        return self._record_verdict(verdict, stats, record, pause)

    async def _stop_profiler(self, aborted: bool, ended: ExitInfo | None) -> ProfileRecord | None:
        """The step's profile: lost to an abort, or stopped while the target runs (a profiler whose target
        could not be killed ends the run); None for a step without one or a target that ended."""
        if not self.phase.profile:
            return None
        if aborted:
            return StepProfiler.lost_to_abort()
        if ended is not None:
            return None
        profile = await self.profiler.stop(self.phase.profile_stop_timeout_s)
        if self.profiler.kill_failed:
            self.ctx.ledger.fail_run(self.profiler.kill_failed)
        return profile

    async def _measure(
        self, outcome: ReplayOutcome, latency: StepLatencyProbe
    ) -> tuple[PauseAccount, PhaseStats, ServerLatency, MeasurementCheck]:
        """The step's pause account, its stats (the pause's idle time left out), the server's latency over it,
        and the client-vs-server cross-check."""
        phase = self.phase
        slo = Slo(phase.slo_ttft_ms, phase.slo_tpot_ms, phase.slo_e2el_ms)
        pause = account_pauses(outcome.pauses, outcome.records)
        wall_s = outcome.wall_s - pause.idle_s  # time the target idled only because of a pause is not the step's
        stats = phase_stats(outcome.records, wall_s, phase.percentiles, slo)
        server = await latency.finish(stats.ok)
        client = stats  # the server's histograms saw every request: the cross-check compares all of them
        if stats.latency_excluded:
            client = phase_stats(outcome.records, wall_s, phase.percentiles, slo, exclude_paused=False)
        return pause, stats, server, self._check_measurement(client.distributions, server)

    def _record_verdict(
        self, verdict: StepJudgement, stats: PhaseStats, record: dict, pause: PauseAccount
    ) -> StepOutcome:
        """An aborted step's event, a DONE step's marker (with its kind's results and pause), or its failure."""
        ctx, step = self.ctx, self.step
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


def _planned(workload: Workload, limit_requests: int | None) -> int:
    """How many requests the step means to send: every turn of every conversation, at most `limit_requests`."""
    planned = sum(len(c.turns) for c in workload.conversations)
    return planned if limit_requests is None else min(planned, limit_requests)


def _describe(ended: ExitInfo | None) -> str | None:
    return ended.describe() if ended is not None else None
