"""RunView: the state of a run as folded from its events (pure; no I/O). The console and the
headless printer both render it, so they always agree.

It takes events as `runners.run.event_types.parse_event` reads them back (`LoggedEvent`: the event and its
time), and picks each one's handler by its class (`RunView.HANDLERS`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import PurePath
from typing import Any, ClassVar

from engine.units import gib_text
from runners.plan.model import Plan
from runners.plan.serve_spec import DockerServe, ExternalServe
from runners.plan.steps import StepKey
from runners.run.event_types import (
    ABSENT,
    AbortRequested,
    ControlRefused,
    DispatchPaused,
    DispatchResumed,
    EngineStalled,
    EnvMismatch,
    EnvUnverified,
    EnvVerified,
    Event,
    GuardEndedTarget,
    GuardLost,
    GuardStarted,
    KernelChecksFailed,
    KnownOomMatched,
    MeasurementDistorted,
    OomRecorded,
    OomRecordFailed,
    OrphanCheckFailed,
    OrphansChecked,
    PageCacheDropped,
    PreflightWarning,
    ProfileCaptured,
    ProfileLost,
    ProfileRecovered,
    ProfileStarted,
    ReadEvent,
    RestartAllowed,
    RestartBlocked,
    RunDirUnwritable,
    RunFinished,
    RunStarted,
    ServeFailed,
    ServeHealth,
    ServeKilled,
    ServeOom,
    ServeReady,
    ServeRestarting,
    ServeStarting,
    ServeStopFailed,
    ServeStopped,
    StallCleared,
    StallSuspected,
    StepAborted,
    StepFailed,
    StepFinished,
    StepProgress,
    StepSkipped,
    StepStarted,
    SummaryFailed,
    SummaryWritten,
    UnreadableEvent,
    WatchdogLevel,
)
from runners.run.incident_slot import incident_text
from runners.run.redact import env_policy

LIVE_KEYS = (
    "ttft_p50_ms", "ttft_p95_ms", "tpot_p50_ms", "tpot_p95_ms", "itl_p50_ms", "itl_p95_ms", "output_tokens", "errors",
)  # fmt: skip
STEP_ICONS = {
    "pending": "·", "running": "▶", "done": "✔", "failed": "✘", "aborted": "■", "skipped": "✔", "unknown": "?",
}  # fmt: skip
LIVE_STATUSES = ("running", "aborting")  # a session that has not written run_finished (yet)


@dataclass
class StepView:
    """One step as the operator sees it."""

    key: StepKey
    status: str = "pending"  # pending | running | done | skipped | failed | aborted | unknown (its runner is gone)
    total: int = 0
    completed: int = 0
    failed: int = 0
    started_t: float | None = None
    ended_t: float | None = None
    reason: str = ""
    live: dict = field(default_factory=dict)
    paused_s: float = 0.0  # dispatch paused during the step, pauses that ended (event clock)
    paused_since: float | None = None  # the pause in progress during this step began then (or when it started)
    pause: dict | None = None  # the step's pause account from step_finished (runners/replay/pauses.py)

    @property
    def icon(self) -> str:
        """A one-character status mark."""
        return STEP_ICONS.get(self.status, "?")

    def duration(self, now: float) -> float | None:
        """Seconds the step ran (so far, while it runs); None before it started."""
        if self.started_t is None:
            return None
        return (self.ended_t or now) - self.started_t

    def paused_total(self, now: float) -> float:
        """Seconds dispatch was paused during the step, the pause in progress included."""
        current = max(0.0, now - self.paused_since) if self.paused_since is not None else 0.0
        return self.paused_s + current

    def active(self, now: float) -> float | None:
        """Seconds the step ran while dispatch was not paused; None before it started."""
        took = self.duration(now)
        return None if took is None else max(0.0, took - self.paused_total(self.ended_t or now))

    def close_pause(self, t: float | None) -> None:
        """The pause in progress ended (or the step did) at `t`: add it to `paused_s`."""
        if self.paused_since is not None and t is not None:
            self.paused_s += max(0.0, t - self.paused_since)
        self.paused_since = None

    def paused_text(self, now: float) -> str:
        """`paused 21s` while or after a pause (with how much was left out of the wall time once the step
        is done), else empty."""
        total = self.paused_total(now)
        if not total and not (self.pause or {}).get("paused_s"):
            return ""
        if self.pause and self.status == "done":
            paused, idle = self.pause.get("paused_s") or 0.0, self.pause.get("idle_s") or 0.0
            return f"paused {paused:.1f} s, {idle:.1f} s excluded from wall"
        return f"paused {short_duration(total)}"


def describe_target(plan: Plan) -> str:
    """What serves the arms, in a few words: `process: <command or engine>`, `docker: <image>`, `external: <url>`."""
    serve = plan.serve
    if isinstance(serve, DockerServe):
        return f"docker: {serve.image}"
    if isinstance(serve, ExternalServe):
        return f"external: {serve.url}"
    if serve.command:
        return "process: " + " ".join(serve.command)[:60]
    return "process: embedded engine" + (f" ({PurePath(serve.engine_config).name})" if serve.engine_config else "")


@dataclass
class ArmView:
    """An arm: its serve target's state and its effective env."""

    name: str
    serve: str = "not started"
    env: dict[str, str] = field(default_factory=dict)  # the arm's own env, as the plan sets it
    effective: dict[str, str] | None = None
    env_status: str = "unverified"
    env_where: str | None = None  # the process that verified it (EngineCore pid ..., /debug/config)
    ready_t: float | None = None  # when the serve target last became ready (None while it is not up)
    health: str = "-"  # the serve target's /health while it is up: ok or FAILING ("-" while it is not up)
    failing_t: float | None = None  # when /health began failing
    restarts: int = 0
    base_url: str = ""

    def uptime(self, now: float) -> float | None:
        """Seconds the serve target has been up, while it is."""
        return now - self.ready_t if self.ready_t is not None else None

    def health_text(self, now: float) -> str:
        """ok, `-`, or FAILING with how long it has been failing."""
        if self.health != "FAILING" or self.failing_t is None:
            return self.health
        return f"FAILING {short_duration(now - self.failing_t)}"


def short_duration(seconds: float) -> str:
    """A duration in few cells: 42s, 3m07s, 2h05m."""
    whole = int(max(0.0, seconds))
    if whole < 60:
        return f"{whole}s"
    if whole < 3600:
        return f"{whole // 60}m{whole % 60:02d}s"
    return f"{whole // 3600}h{whole % 3600 // 60:02d}m"


@dataclass
class RunView:
    """Everything the console shows, derived from events only."""

    run_id: str = ""
    plan: str = ""
    status: str = "created"  # created, running, aborting, finished, failed, aborted; gone: no run_finished, no runner
    reason: str = ""
    started_t: float | None = None
    ended_t: float | None = None
    last_t: float | None = None
    arms: dict[str, ArmView] = field(default_factory=dict)
    steps: dict[StepKey, StepView] = field(default_factory=dict)
    current: StepKey | None = None
    watchdog_level: str = "unknown"  # ok / warn / abort / kill, "lost" when the guard is gone
    paused: bool = False  # dispatch held by the operator (requests in flight finish)
    host: str = ""  # where the runner runs (provenance.json)
    target: str = ""  # what serves: the plan's serve kind and image, command or URL
    serving: tuple[str, str] | None = None  # (arm, mode) of the serve target started last
    runner_pid: int | None = None  # the pid of the session's runner (run_started)
    log: list[str] = field(default_factory=list)
    incidents: list[tuple[float, str]] = field(default_factory=list)  # (t, what): OOMs, kills, known-OOM matches
    unreadable: dict[str, int] = field(default_factory=dict)  # lines of a known type that could not be read, by type

    @classmethod
    def for_plan(cls, plan: Plan, run_id: str) -> RunView:
        """A view with every arm and step of `plan` pending."""
        view = cls(run_id=run_id, plan=plan.name, target=describe_target(plan))
        policy = env_policy(plan)  # values shown only where harmless: runners/run/redact.py
        view.arms = {a.name: ArmView(a.name, env=policy.env(a.env) or {}) for a in plan.arms}
        view.steps = {s: StepView(s) for s in plan.steps()}
        return view

    def elapsed(self, now: float) -> float | None:
        """Seconds since the run started (until it ended)."""
        if self.started_t is None:
            return None
        return (self.ended_t or now) - self.started_t

    def eta_s(self, now: float) -> float | None:
        """Seconds left, estimated: the mean time finished steps ran unpaused, times the steps left, less what
        the running step has run unpaused (None before one ends). A pause holds it still."""
        finished = [s.active(now) for s in self.steps.values() if s.status == "done" and s.ended_t is not None]
        if not finished or self.status not in LIVE_STATUSES:
            return None
        mean = sum(d for d in finished if d is not None) / len(finished)
        left = [s for s in self.steps.values() if s.status in ("pending", "running")]
        running = sum(min(s.active(now) or 0.0, mean) for s in left if s.status == "running")
        return max(0.0, mean * len(left) - running)

    def current_step(self) -> StepView | None:
        """The step in flight, if any."""
        return self.steps.get(self.current) if self.current else None

    def counts(self) -> dict[str, int]:
        """How many steps are in each state."""
        out: dict[str, int] = {}
        for s in self.steps.values():
            out[s.status] = out.get(s.status, 0) + 1
        return out

    def runner_gone(self, incident: str | None = None) -> str | None:
        """The session's runner is gone and the events end without run_finished (it was killed, events.jsonl ends
        early, or, `incident`, it stopped because it could not write the run directory and said why in
        incident.slot): what was in flight is unknown and its clocks stop at the last event. Returns a line for
        the log, or None when the events say the session ended (or none began)."""
        if self.status not in LIVE_STATUSES:
            return None
        end = self.last_t
        self._pause_ended(end)  # a pause the dead runner held ends with its last event
        for step in self.steps.values():
            if step.status == "running":
                step.status, step.ended_t, step.reason = "unknown", end, "its runner is gone"
        for arm in self.arms.values():
            if arm.ready_t is not None or arm.serve == "starting":
                arm.serve, arm.ready_t, arm.health, arm.failing_t = "unknown", None, "-", None
        self.status, self.ended_t, self.current = "gone", end, None
        if incident is not None:
            self.reason = f"runner stopped (pid {self.runner_pid}): {incident}"
            line = f"{self.reason}; its state and events could not be written: the serve targets are unknown"
        else:
            self.reason = f"runner gone (pid {self.runner_pid})"
            line = f"{self.reason} without run_finished: the step in flight and the serve targets are unknown"
        self.log.append(line)
        return line

    def apply(self, read: ReadEvent) -> str | None:
        """Fold one event read back from events.jsonl in; returns a log line for it (None for routine progress).

        Its handler is picked by its class (`HANDLERS`). A line of a type this version does not know changes
        nothing but the last event time; one of a known type that could not be read changes nothing, and the
        first of each type is said in the log (what was wrong with it)."""
        if read.t is not None:
            self.last_t = read.t
        line = self._unreadable(read) if isinstance(read, UnreadableEvent) else self._fold(read.event, read.t)
        if line:
            self.log.append(line)
            del self.log[:-500]
        return line

    def _fold(self, event: Event, t: float) -> str | None:
        """Run the event's handler; one that fails on a payload no check foresaw (a stats object of another shape)
        says so in the log instead of stopping the console."""
        handler = self.HANDLERS.get(type(event))
        if handler is None:
            return None
        try:
            return handler(self, event, t)
        except Exception as exc:  # the view must outlive any line
            return f"events.jsonl: a {event.TYPE} line could not be folded ({type(exc).__name__}: {exc})"

    def _unreadable(self, read: UnreadableEvent) -> str | None:
        """The first unreadable line of each known type, in words; later ones are counted in `unreadable`."""
        if not read.known or read.type is None:
            return None
        self.unreadable[read.type] = self.unreadable.get(read.type, 0) + 1
        if self.unreadable[read.type] > 1:
            return None
        return (f"events.jsonl: a {read.type} line could not be read and is left out ({'; '.join(read.problems)}); "
                f"later unreadable {read.type} lines are left out without a word")  # fmt: skip

    def _step(self, key: StepKey) -> StepView:
        return self.steps.setdefault(key, StepView(key))

    def _arm(self, name: str) -> ArmView:
        return self.arms.setdefault(name, ArmView(name))

    def _on_run_started(self, e: RunStarted, t: float) -> str:
        self.run_id, self.plan = e.run_id, e.plan
        self._pause_ended(t)  # a pause of an earlier session ended with it
        self.status, self.reason, self.ended_t = "running", "", None
        self.runner_pid = e.pid
        self.started_t = self.started_t or t
        for name in e.arms:
            self._arm(name)
        for d in e.steps:
            try:
                self._step(StepKey.from_dict(d))
            except (KeyError, TypeError, ValueError):
                continue
        resumed = e.already_done
        return f"run started (pid {e.pid})" + (f", resuming: {resumed} step(s) already done" if resumed else "")

    def _on_run_finished(self, e: RunFinished, t: float) -> str:
        self.status, self.reason, self.ended_t = e.status, e.reason, t
        self._pause_ended(t)
        self.current = None
        return f"run {self.status}: {self.reason}"

    def _pause_ended(self, t: float | None) -> None:
        """Dispatch is no longer paused from `t` on; the step in flight counts the pause."""
        self.paused = False
        step = self.current_step()
        if step is not None:
            step.close_pause(t)

    def _on_dispatch_paused(self, e: DispatchPaused, t: float) -> str:
        self.paused = True
        step = self.current_step()
        if step is not None and step.paused_since is None:
            step.paused_since = t
        return f"dispatch paused by {e.by}: requests in flight finish, no new ones start"

    def _on_dispatch_resumed(self, e: DispatchResumed, t: float) -> str:
        self._pause_ended(t)
        return f"dispatch continues after {e.paused_s:.1f} s paused"

    def _on_abort_requested(self, e: AbortRequested, t: float) -> str:
        self.status = "aborting"
        return f"abort requested by {e.by}: {e.reason}"

    def _on_serve_starting(self, e: ServeStarting, t: float) -> str:
        self._arm(e.arm).serve = "starting"
        self.serving = (e.arm, e.mode)
        return f"{e.arm}: starting serve target ({e.kind}, {e.mode})"

    def _on_serve_ready(self, e: ServeReady, t: float) -> str:
        where = f"container {e.container[:12]}" if e.container else f"pid {e.pid}"
        arm = self._arm(e.arm)
        arm.serve, arm.ready_t, arm.base_url = f"ready {where}", t, e.base_url
        arm.health = "ok"
        return f"{e.arm}: serve target ready in {e.waited_s:.1f} s at {e.base_url}"

    def _on_serve_failed(self, e: ServeFailed, t: float) -> str:
        arm = self._arm(e.arm)
        arm.serve, arm.ready_t, arm.health = "failed", None, "-"
        return f"{e.arm}: serve target failed: {e.reason}"

    def _on_serve_stopped(self, e: ServeStopped, t: float) -> str:
        arm = self._arm(e.arm)
        arm.serve, arm.ready_t = e.how.split(" (")[0], None  # e.g. terminated, killed
        arm.health = "-"
        return f"{e.arm}: serve target stopped: {e.how}"

    def _on_serve_health(self, e: ServeHealth, t: float) -> str:
        arm = self._arm(e.arm)
        if e.healthy:
            arm.health, arm.failing_t = "ok", None
            return f"{e.arm}: /health answers again ({e.latency_ms} ms)"
        arm.health, arm.failing_t = "FAILING", t
        return f"{e.arm}: /HEALTH FAILING while the target is up: {e.detail}"

    def _on_serve_stop_failed(self, e: ServeStopFailed, t: float) -> str:
        self._arm(e.arm).serve = "STOP FAILED"
        return f"{e.arm}: SERVE TARGET COULD NOT BE STOPPED: {e.reason}"

    def _on_serve_oom(self, e: ServeOom, t: float) -> str:
        self.incidents.append((t, f"{e.step.arm}: OOM in the target"))
        return f"{e.step.arm}: OOM in the serve target: cgroup oom_kill {e.cgroup_oom_kills}, OOMKilled={e.oom_killed}"

    def _on_oom_recorded(self, e: OomRecorded, t: float) -> str:
        self.incidents.append((t, f"{e.arm}: recorded as a known OOM"))
        return (
            f"{e.arm} ({e.mode}): added to this host's known-OOM record ({e.cause_text}); "
            f"plans that start it again are refused without --force ({e.record})"
        )

    def _on_oom_record_failed(self, e: OomRecordFailed, t: float) -> str:
        return f"the known-OOM record could not be written: {e.error}"

    def _on_known_oom_matched(self, e: KnownOomMatched, t: float) -> str:
        self.incidents.append((t, f"{e.arm}: matches a known OOM"))
        return f"KNOWN OOM (run with --force): {e.message}"

    def _on_page_cache_dropped(self, e: PageCacheDropped, t: float) -> str:
        head = f"{e.arm}: MemFree {e.free_before_gib} GiB < {e.need_gib} GiB the target asks for"
        if e.dropped:
            return f"{head}: page cache dropped before the start (MemFree now {e.free_after_gib} GiB)"
        return f"{head}: the page cache could not be dropped: {e.reason}"

    def _on_preflight_warning(self, e: PreflightWarning, t: float) -> str:
        return f"pre-flight warning ({e.topic}): {e.message}"

    def _on_control_refused(self, e: ControlRefused, t: float) -> str:
        return f"{e.detail} (removed unread: only the run's owner drives it)"

    def _on_run_dir_unwritable(self, e: RunDirUnwritable, t: float) -> str:
        return f"the last session stopped: {incident_text({'reason': e.reason, 'step': e.step})}"

    def _on_profile_started(self, e: ProfileStarted, t: float) -> str:
        return f"{e.step.arm}: profiler started for {e.step.phase}"

    def _on_profile_captured(self, e: ProfileCaptured, t: float) -> str:
        return f"{e.step.arm}: profile captured (stop {e.stop_s} s, {len(e.files)} files): {e.trace}"

    def _on_profile_recovered(self, e: ProfileRecovered, t: float) -> str:
        return f"{e.step.arm}: profile recovered after kill: {e.trace} ({e.reason})"

    def _on_profile_lost(self, e: ProfileLost, t: float) -> str:
        return f"{e.step.arm}: PROFILE LOST: {e.reason}"

    def _on_serve_killed(self, e: ServeKilled, t: float) -> str:
        arm = self._arm(e.arm)
        arm.serve, arm.ready_t, arm.health = "killed", None, "-"
        return f"{e.arm}: serve target killed ({e.how}): {e.reason}"

    def _on_serve_restarting(self, e: ServeRestarting, t: float) -> str:
        arm = self._arm(e.arm)
        arm.restarts, arm.ready_t, arm.health = arm.restarts + 1, None, "-"
        return f"{e.arm}: restarting the serve target (restart {e.restart}) for {len(e.remaining)} step(s)"

    def _on_guard_started(self, e: GuardStarted, t: float) -> str:
        floors = e.floors_gib
        self.watchdog_level = "ok"
        return (
            f"guard up (pid {e.pid}): MemAvailable floors WARN {_gib(floors.get('warn'))} / ABORT "
            f"{_gib(floors.get('abort'))} / KILL {_gib(floors.get('kill'))} GiB"
        )

    def _on_watchdog_level(self, e: WatchdogLevel, t: float) -> str:
        self.watchdog_level = e.level
        return f"memory {e.level.upper()} (was {e.previous}): {e.reason}"

    def _on_guard_ended_target(self, e: GuardEndedTarget, t: float) -> str:
        target = e.target
        if target.get("arm") in self.arms and not e.outcome.startswith(("left", "FAILED")):
            arm = self.arms[target["arm"]]
            arm.serve = "killed by the guard" if e.kill else "stopped by the guard"
            arm.ready_t, arm.health, arm.failing_t = None, "-", None
        if e.kill:
            self.incidents.append((t, f"{target.get('arm')}: killed by the guard"))
        return f"{target.get('arm')}: the guard ended the serve target ({e.outcome}): {e.cause}"

    def _on_guard_lost(self, e: GuardLost, t: float) -> str:
        self.watchdog_level = "lost"
        return f"GUARD LOST: {e.reason}; the runner stops the target (fail closed)"

    def _on_restart_blocked(self, e: RestartBlocked, t: float) -> str:
        return f"next serve target held back: {e.reason} (waiting up to {e.wait_s} s)"

    def _on_restart_allowed(self, e: RestartAllowed, t: float) -> str:
        return "memory recovered: serve targets may start again"

    def _on_orphans_checked(self, e: OrphansChecked, t: float) -> str | None:
        if not e.stopped:
            return None
        names = ", ".join(f"{o.get('name')} ({o.get('action')})" for o in e.stopped)
        return f"orphaned serve containers of dead runners: {names}"

    def _on_orphan_check_failed(self, e: OrphanCheckFailed, t: float) -> str:
        return f"orphan check failed: {e.reason}"

    def _on_env_verified(self, e: EnvVerified, t: float) -> str:
        arm = self._arm(e.arm)
        arm.effective, arm.env_status, arm.env_where = e.reported, "verified", e.where
        shown = ", ".join(f"{k}={v}" for k, v in arm.effective.items())
        return f"{e.arm}: env verified by {e.where or 'the target'}: {shown}"

    def _on_env_unverified(self, e: EnvUnverified, t: float) -> str:
        arm = self._arm(e.arm)
        arm.env_status, arm.env_where = "unverified", None
        return f"{e.arm}: env unverified (no verdict): {e.reason}"

    def _on_env_mismatch(self, e: EnvMismatch, t: float) -> str:
        arm = self._arm(e.arm)
        arm.effective, arm.env_status, arm.env_where = e.reported, "mismatch", e.where
        where = f" in {e.where}" if e.where else ""
        return f"{e.arm}: ENV MISMATCH{where}: {'; '.join(e.mismatches)}"

    def _on_summary_written(self, e: SummaryWritten, t: float) -> str:
        said = ", ".join(f"{arm}: {v}" for arm, v in e.verdicts.items())
        return f"summary written ({len(e.plots)} plots){f'; verdicts: {said}' if said else ''}"

    def _on_summary_failed(self, e: SummaryFailed, t: float) -> str:
        return f"summary NOT written: {e.reason}; retry with `gb10-console report RUN_DIR`"

    def _on_kernel_checks_failed(self, e: KernelChecksFailed, t: float) -> str:
        what = "; ".join(f"{c.get('kernel')} {c.get('check')} max |diff| {c.get('max_abs')}" for c in e.failed[:3])
        return f"{e.arm}: KERNEL CHECK FAILED ({len(e.failed)}): {what}; the arm will be rejected"

    def _on_step_started(self, e: StepStarted, t: float) -> str:
        step = self._step(e.step)
        step.status, step.total, step.completed, step.failed = "running", e.requests, 0, 0
        step.started_t, step.ended_t, step.reason, step.live = t, None, "", {}
        step.paused_s, step.paused_since, step.pause = 0.0, t if self.paused else None, None
        self.current = step.key
        return f"{step.key.path}: started ({step.total} requests, concurrency {e.concurrency})"

    def _on_step_progress(self, e: StepProgress, t: float) -> None:
        step = self._step(e.step)
        step.total, step.completed, step.failed = e.total, e.completed, e.failed
        step.live = {k: getattr(e, k) for k in LIVE_KEYS}

    def _on_step_finished(self, e: StepFinished, t: float) -> str:
        step = self._step(e.step)
        stats = e.stats
        step.status, step.ended_t = "done", t
        step.close_pause(step.ended_t)
        step.pause = e.pause if isinstance(e.pause, dict) else None
        step.completed, step.failed = stats.get("requests", step.completed), stats.get("failed", step.failed)
        step.live = {k: stats.get(k) for k in LIVE_KEYS}
        if self.current == step.key:
            self.current = None
        wall = stats.get("wall_s") or 0.0
        paused = f" ({step.paused_text(step.ended_t or 0.0)})" if step.pause else ""
        return f"{step.key.path}: done, {stats.get('ok')} ok / {stats.get('failed')} failed in {wall:.1f} s{paused}"

    def _end(self, key: StepKey, t: float, status: str, reason: str, text: str) -> str:
        step = self._step(key)
        step.status, step.ended_t, step.reason = status, t, reason
        step.close_pause(step.ended_t)
        if self.current == step.key:
            self.current = None
        return f"{step.key.path}: {text}"

    def _on_step_failed(self, e: StepFailed, t: float) -> str:
        return self._end(e.step, t, "failed", e.reason, f"FAILED: {e.reason}")

    def _on_step_aborted(self, e: StepAborted, t: float) -> str:
        return self._end(e.step, t, "aborted", "", "aborted; it will run again on --resume")

    def _on_measurement_distorted(self, e: MeasurementDistorted, t: float) -> str:
        step = self._step(e.step)
        return f"{step.key.path}: CLIENT-SIDE DISTORTION (the server's own latency disagrees): {e.reason}"

    def _on_stall_suspected(self, e: StallSuspected, t: float) -> str:
        return (f"{e.step.path}: no chunk for {e.quiet_s:.1f} s with {e.in_flight} in flight: dispatch held "
                f"(a stall at {e.stall_s:g} s kills the target)")  # fmt: skip

    def _on_stall_cleared(self, e: StallCleared, t: float) -> str:
        return f"{e.step.path}: {e.why}: dispatch continues after {e.held_s:.1f} s held"

    def _on_engine_stalled(self, e: EngineStalled, t: float) -> str:
        step = self._step(e.step)
        arm = self._arm(step.key.arm)
        arm.serve, arm.ready_t, arm.health = "killed (stall)", None, "-"
        self.incidents.append((t, f"{step.key.arm}: engine stalled, killed"))
        return f"{step.key.path}: ENGINE STALLED: {e.reason}"

    def _on_step_skipped(self, e: StepSkipped, t: float) -> str:
        """A step DONE in an earlier session keeps its own times: those already folded from that session's
        events, else the event's `started_at`/`ended_at` (phase.json); never this event's time."""
        step = self._step(e.step)
        started, ended = step.started_t, step.ended_t
        if started is None or ended is None:
            started, ended = _given(e.started_at), _given(e.ended_at)
        self._end(e.step, t, "skipped", e.reason, "")
        step.started_t, step.ended_t = started, ended
        return f"{step.key.path}: skipped (done earlier)"

    # every event class the view folds, and its handler; the other classes change only the last event time
    HANDLERS: ClassVar[dict[type[Event], Callable[[RunView, Any, float], str | None]]] = {
        RunStarted: _on_run_started,
        RunFinished: _on_run_finished,
        DispatchPaused: _on_dispatch_paused,
        DispatchResumed: _on_dispatch_resumed,
        AbortRequested: _on_abort_requested,
        ServeStarting: _on_serve_starting,
        ServeReady: _on_serve_ready,
        ServeFailed: _on_serve_failed,
        ServeStopped: _on_serve_stopped,
        ServeHealth: _on_serve_health,
        ServeStopFailed: _on_serve_stop_failed,
        ServeOom: _on_serve_oom,
        OomRecorded: _on_oom_recorded,
        OomRecordFailed: _on_oom_record_failed,
        KnownOomMatched: _on_known_oom_matched,
        PageCacheDropped: _on_page_cache_dropped,
        PreflightWarning: _on_preflight_warning,
        RunDirUnwritable: _on_run_dir_unwritable,
        ControlRefused: _on_control_refused,
        ProfileStarted: _on_profile_started,
        ProfileCaptured: _on_profile_captured,
        ProfileRecovered: _on_profile_recovered,
        ProfileLost: _on_profile_lost,
        ServeKilled: _on_serve_killed,
        ServeRestarting: _on_serve_restarting,
        GuardStarted: _on_guard_started,
        WatchdogLevel: _on_watchdog_level,
        GuardEndedTarget: _on_guard_ended_target,
        GuardLost: _on_guard_lost,
        RestartBlocked: _on_restart_blocked,
        RestartAllowed: _on_restart_allowed,
        OrphansChecked: _on_orphans_checked,
        OrphanCheckFailed: _on_orphan_check_failed,
        EnvVerified: _on_env_verified,
        EnvUnverified: _on_env_unverified,
        EnvMismatch: _on_env_mismatch,
        SummaryWritten: _on_summary_written,
        SummaryFailed: _on_summary_failed,
        KernelChecksFailed: _on_kernel_checks_failed,
        StepStarted: _on_step_started,
        StepProgress: _on_step_progress,
        StepFinished: _on_step_finished,
        StepFailed: _on_step_failed,
        StepAborted: _on_step_aborted,
        MeasurementDistorted: _on_measurement_distorted,
        EngineStalled: _on_engine_stalled,
        StallSuspected: _on_stall_suspected,
        StallCleared: _on_stall_cleared,
        StepSkipped: _on_step_skipped,
    }


def _given(value: float | None) -> float | None:
    """An optional event field as a number: None when it was not given."""
    return None if value is ABSENT else value


def _gib(value: object) -> str:
    """A floor from an event: `2.94` for 2.9425125122070312; "?" when the event lacks it."""
    return gib_text(value) if isinstance(value, int | float) else "?"
