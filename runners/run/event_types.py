"""Every event type of `events.jsonl` and its fields: the one definition emitters, readers and docs use.

An event is a frozen dataclass; its class docstring is what the event means and its fields are the
line's fields (after `v`, `t` and `type`). Fields declared with `OPTIONAL` metadata are left out of
the line when they were not given (the line then reads as it did before the field existed); every
other field, and an optional one given as None, is written, None as null. Step objects are written
as `{"arm", "mode", "phase", "rep"}`.
`check_event` says what is wrong with a line read back; docs/architecture.md's event table is
`markdown_table()` (a test keeps the two equal).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, ClassVar

from runners.plan.steps import StepKey

EVENT_SCHEMA = 1
ENVELOPE = ("v", "t", "type")


class _Absent:
    """The default of an optional field: not given, so not written (None is written as null)."""

    def __repr__(self) -> str:
        return "ABSENT"


ABSENT: Any = _Absent()
OPTIONAL = {"optional": True}  # field metadata: left out of the line when not given


@dataclass(frozen=True)
class Event:
    """The base of every event type."""

    TYPE: ClassVar[str] = ""
    DURABLE: ClassVar[bool] = False  # fsynced: losing it would misreport where a run stands

    def fields(self) -> dict[str, object]:
        """The line's fields (no envelope), step keys as objects, optional fields not given left out."""
        out: dict[str, object] = {}
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if value is ABSENT:
                continue
            out[f.name] = value.as_dict() if isinstance(value, StepKey) else value
        return out


# ---- the run --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class RunStarted(Event):
    """A runner session began: every step in run order, and how many were DONE before."""

    TYPE = "run_started"
    DURABLE = True
    run_id: str
    plan: str
    pid: int | None
    arms: list[str]
    steps: list[dict]
    already_done: int


@dataclass(frozen=True)
class RunFinished(Event):
    """The session ended: `status` finished, failed or aborted, and why."""

    TYPE = "run_finished"
    DURABLE = True
    status: str
    reason: str
    steps_done: int
    steps_failed: int


@dataclass(frozen=True)
class PreflightWarning(Event):
    """A session began with a plan setting likely to lose evidence (`topic`, e.g. profiler_stop_timeout: the
    target's vLLM profiler settings against a phase's stop deadline); `message` says where and what to set."""

    TYPE = "preflight_warning"
    topic: str
    message: str


@dataclass(frozen=True)
class KnownOomMatched(Event):
    """The run was started with `--force` although an arm's session matches the host's known-OOM record."""

    TYPE = "known_oom_matched"
    arm: str
    mode: str
    message: str


@dataclass(frozen=True)
class OomRecorded(Event):
    """A target of this run that the guard killed (`cause` guard) or the kernel OOM-killed (kernel) was added
    to the host's known-OOM record (`record`); plans that would start it again are refused without --force."""

    TYPE = "oom_recorded"
    DURABLE = True
    arm: str
    mode: str
    cause: str
    cause_text: str
    record: str


@dataclass(frozen=True)
class OomRecordFailed(Event):
    """The host's known-OOM record could not be read or written (`error`); the run's own events still hold any
    incident, and a match against the record was not checked."""

    TYPE = "oom_record_failed"
    error: str


@dataclass(frozen=True)
class PageCacheDropped(Event):
    """Before `arm`'s target started, MemFree was short of what it asks (`need_gib`) while MemAvailable held it:
    with `watchdog.drop_page_cache` the page cache was dropped (`dropped`; MemFree before and after in GiB),
    or `reason` says why not (not root, a read-only /proc/sys)."""

    TYPE = "page_cache_dropped"
    arm: str
    mode: str
    dropped: bool
    free_before_gib: float | None
    free_after_gib: float | None
    need_gib: float
    reason: str


@dataclass(frozen=True)
class ControlCleared(Event):
    """A control request (abort, or `{"pause": ...}`) left over from before this session was cleared."""

    TYPE = "control_cleared"
    request: dict


@dataclass(frozen=True)
class RunDirRepaired(Event):
    """A session found a damaged file in the run directory and repaired it before going on: `action` is
    `torn_line_set_aside` (a last line without its newline moved to `<file>.torn`), `state_rebuilt` (state.json
    rebuilt from events.jsonl and the DONE markers, the damaged copy kept), `provenance_set_aside` (an unreadable
    provenance.json kept aside, a new one started) or `stale_lock_taken_over` (runner.lock held by a process that is
    not a live runner); `detail` says what was kept where."""

    TYPE = "run_dir_repaired"
    DURABLE = True
    file: str
    action: str
    detail: str


@dataclass(frozen=True)
class AbortRequested(Event):
    """An abort was asked for `by` the console, the cli or a signal."""

    TYPE = "abort_requested"
    by: str
    reason: str


@dataclass(frozen=True)
class DispatchPaused(Event):
    """No new request starts until `dispatch_resumed` (requests in flight finish)."""

    TYPE = "dispatch_paused"
    DURABLE = True
    by: str


@dataclass(frozen=True)
class DispatchResumed(Event):
    """Dispatch continues; `paused_s` is how long this pause lasted."""

    TYPE = "dispatch_resumed"
    DURABLE = True
    paused_s: float


@dataclass(frozen=True)
class SummaryWritten(Event):
    """summary.md/summary.json and the plots were written; `verdicts` maps arm to verdict."""

    TYPE = "summary_written"
    path: str
    plots: list[str]
    verdicts: dict


@dataclass(frozen=True)
class SummaryFailed(Event):
    """The report could not be made; the run's own files stand (`gb10-console report` retries)."""

    TYPE = "summary_failed"
    reason: str


# ---- serve targets --------------------------------------------------------------------------------


@dataclass(frozen=True)
class OrphansChecked(Event):
    """Containers labelled `gb10.owner` of dead runners were swept: each with id, name, run_id, arm, owner, action."""

    TYPE = "orphans_checked"
    socket: str
    stopped: list[dict]
    failed: list[dict]
    left: list[dict]


@dataclass(frozen=True)
class OrphanCheckSkipped(Event):
    """No container engine socket: nothing to sweep."""

    TYPE = "orphan_check_skipped"
    reason: str


@dataclass(frozen=True)
class OrphanCheckFailed(Event):
    """The container engine did not answer the sweep (never a reason not to start)."""

    TYPE = "orphan_check_failed"
    socket: str
    reason: str


@dataclass(frozen=True)
class ServeStarting(Event):
    """A serve target is being started; `target` is its inspect (pid or container, command, base_url, log)."""

    TYPE = "serve_starting"
    arm: str
    mode: str
    kind: str
    target: dict


@dataclass(frozen=True)
class ServeReady(Event):
    """The target answered /health, /v1/models and a 1-token completion."""

    TYPE = "serve_ready"
    arm: str
    mode: str
    model: str
    waited_s: float
    pid: int | None
    container: str | None
    base_url: str


@dataclass(frozen=True)
class ServeFailed(Event):
    """The target failed to start or answer; `reason` includes the last lines of serve.log."""

    TYPE = "serve_failed"
    DURABLE = True
    arm: str
    mode: str
    reason: str


@dataclass(frozen=True)
class ServeStopped(Event):
    """The target was stopped; `how` e.g. `terminated (signal 15)`, `target` its inspect after the stop."""

    TYPE = "serve_stopped"
    arm: str
    mode: str
    how: str
    target: dict


@dataclass(frozen=True)
class ServeStopFailed(Event):
    """The target could not be stopped or killed; the run ends failed."""

    TYPE = "serve_stop_failed"
    arm: str
    mode: str
    reason: str


@dataclass(frozen=True)
class ServeKilled(Event):
    """The runner killed its target after a lost profile."""

    TYPE = "serve_killed"
    arm: str
    mode: str
    how: str
    reason: str


@dataclass(frozen=True)
class ServeRestarting(Event):
    """A new target (count `restart`) serves the `remaining` steps of the session."""

    TYPE = "serve_restarting"
    arm: str
    mode: str
    restart: int
    remaining: list[dict]


@dataclass(frozen=True)
class ServeHealth(Event):
    """The target's /health flipped during a step (probed every `health_interval_s`); a failure is a known
    limitation of that step."""

    TYPE = "serve_health"
    arm: str
    mode: str
    step: StepKey
    healthy: bool
    latency_ms: float | None
    detail: str


@dataclass(frozen=True)
class ServeOom(Event):
    """The target's cgroup counted new OOM kills during the step (`cgroup_oom_kills`: since it started)."""

    TYPE = "serve_oom"
    step: StepKey
    new_oom_kills: int
    cgroup_oom_kills: int
    oom_killed: bool | None
    container: str | None


@dataclass(frozen=True)
class EnvVerified(Event):
    """A process of the target reports the arm's env: `where` names it (an EngineCore pid, or /debug/config)."""

    TYPE = "env_verified"
    arm: str
    reported: dict
    unverified_keys: list[str]
    where: str | None = None


@dataclass(frozen=True)
class EnvUnverified(Event):
    """The target does not report its settings: the arm's env is unverified."""

    TYPE = "env_unverified"
    arm: str
    reason: str


@dataclass(frozen=True)
class EnvMismatch(Event):
    """The target runs another env than the arm's (`KEY: want X, target runs Y`); the arm is not measured."""

    TYPE = "env_mismatch"
    DURABLE = True
    arm: str
    mismatches: list[str]
    reported: dict
    where: str | None = None


@dataclass(frozen=True)
class KernelChecksFailed(Event):
    """The target's own kernel checks failed: measured anyway, rejected by the kernel-correctness gate."""

    TYPE = "kernel_checks_failed"
    DURABLE = True
    arm: str
    mode: str
    failed: list[dict]


# ---- steps ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class StepStarted(Event):
    """A step began: its kind, planned requests, concurrency and whether arrivals are open-loop."""

    TYPE = "step_started"
    step: StepKey
    kind: str
    requests: int
    concurrency: int | None
    open_loop: bool


@dataclass(frozen=True)
class StepProgress(Event):
    """Live numbers of the step in flight (at most every 0.5 s, and at the last request); `errors` counts
    failed requests per error kind."""

    TYPE = "step_progress"
    step: StepKey
    total: int
    completed: int
    failed: int
    output_tokens: int
    ttft_p50_ms: float | None
    ttft_p95_ms: float | None
    tpot_p50_ms: float | None
    tpot_p95_ms: float | None
    itl_p50_ms: float | None
    itl_p95_ms: float | None
    errors: dict


@dataclass(frozen=True)
class StepFinished(Event):
    """The step is DONE: its PhaseStats, the kind's own results (GSM8K, coherence) where it has them, and its
    `pause` account (runners/replay/pauses.py) when dispatch was paused during it."""

    TYPE = "step_finished"
    DURABLE = True
    step: StepKey
    stats: dict
    gsm8k: dict | None = field(default=ABSENT, metadata=OPTIONAL)
    coherence: dict | None = field(default=ABSENT, metadata=OPTIONAL)
    pause: dict | None = field(default=ABSENT, metadata=OPTIONAL)


@dataclass(frozen=True)
class StepFailed(Event):
    """The step failed (or was not run) for `reason`; `--resume` runs it again."""

    TYPE = "step_failed"
    DURABLE = True
    step: StepKey
    reason: str


@dataclass(frozen=True)
class StepAborted(Event):
    """The step was cut short by an abort after `completed` requests."""

    TYPE = "step_aborted"
    DURABLE = True
    step: StepKey
    completed: int


@dataclass(frozen=True)
class MeasurementDistorted(Event):
    """The step's client TTFT/ITL means disagree with the server's own histograms beyond the plan's bounds
    (`comparisons`: metric, both means, their distance and the bound, ms): client-side distortion; an arm whose
    deciding step it is gets no verdict."""

    TYPE = "measurement_distorted"
    step: StepKey
    reason: str
    comparisons: list[dict]


@dataclass(frozen=True)
class EngineStalled(Event):
    """No stream got a chunk for `quiet_s` (over the phase's `stall_s`) while `in_flight` requests waited, and
    /metrics showed no generated token (`tokens`: the counter, `running`: the gauge; null when not scraped;
    `metrics` says what it showed): the target was killed (`how`, in `kill_s`) and the step failed for `reason`."""

    TYPE = "engine_stalled"
    step: StepKey
    quiet_s: float
    stall_s: float
    in_flight: int
    tokens: float | None
    running: float | None
    metrics: str
    how: str
    kill_s: float
    reason: str


@dataclass(frozen=True)
class StepSkipped(Event):
    """The step was DONE in an earlier session; `started_at`/`ended_at` are that step's own times (phase.json), so
    a reader never takes this event's time for the step's end."""

    TYPE = "step_skipped"
    step: StepKey
    reason: str
    started_at: float | None = field(default=ABSENT, metadata=OPTIONAL)
    ended_at: float | None = field(default=ABSENT, metadata=OPTIONAL)


@dataclass(frozen=True)
class ProfileStarted(Event):
    """The target's profiler was started for the step; `answer` is what /start_profile said."""

    TYPE = "profile_started"
    step: StepKey
    answer: dict


@dataclass(frozen=True)
class ProfileCaptured(Event):
    """/stop_profile answered within its deadline and a trace reached the step's profile/."""

    TYPE = "profile_captured"
    step: StepKey
    status: str
    reason: str
    trace: str | None
    stop_s: float | None
    files: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class ProfileLost(Event):
    """No trace reached the step (deadline, error, memory alarm, abort, or none written); the measurements stand."""

    TYPE = "profile_lost"
    step: StepKey
    status: str
    reason: str
    trace: str | None
    stop_s: float | None
    files: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class ProfileRecovered(Event):
    """The stop failed and the target was killed, yet the trace it had written was collected into the step."""

    TYPE = "profile_recovered"
    step: StepKey
    status: str
    reason: str
    trace: str | None
    stop_s: float | None
    files: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class RegionTimingsCaptured(Event):
    """The target's region-timing dump was read into the step as `file` (region_timings.npy): `regions` decoded,
    in `unit` (us or ticks), calibrated by `calibration` (tick_ns, the profiler mean of a kernel, or null)."""

    TYPE = "region_timings_captured"
    step: StepKey
    file: str
    regions: int
    unit: str
    calibration: str | None


@dataclass(frozen=True)
class RegionTimingsMissing(Event):
    """The step asked for a region-timing dump and has none: `status` missing, unreadable or unavailable, and why.
    The step's measurements stand."""

    TYPE = "region_timings_missing"
    step: StepKey
    status: str
    reason: str


# ---- the memory guard -----------------------------------------------------------------------------


@dataclass(frozen=True)
class GuardStarted(Event):
    """The guard runs: its floors (GiB: warn, abort, kill), whether it is mlocked and its oom_score_adj."""

    TYPE = "guard_started"
    pid: int
    runner_pid: int
    floors_gib: dict
    mlocked: bool
    oom_score_adj: int | None
    mlock_error: str | None = field(default=ABSENT, metadata=OPTIONAL)
    oom_score_adj_error: str | None = field(default=ABSENT, metadata=OPTIONAL)


@dataclass(frozen=True)
class WatchdogLevel(Event):
    """The guard's level changed, with the numbers that decided it."""

    TYPE = "watchdog_level"
    level: str
    previous: str
    reason: str
    available_gib: float | None
    fill_gib_s: float | None
    seconds_to_kill_floor: float | None
    restart_allowed: bool


@dataclass(frozen=True)
class WatchdogAction(Event):
    """The guard acted (`warn`, `abort`, or `kill` with nothing listed: `outcome` says so), with its numbers."""

    TYPE = "watchdog_action"
    DURABLE = True
    action: str
    reason: str
    available_gib: float | None
    fill_gib_s: float | None
    seconds_to_kill_floor: float | None
    restart_allowed: bool
    outcome: str | None = field(default=ABSENT, metadata=OPTIONAL)


@dataclass(frozen=True)
class GuardEndedTarget(Event):
    """The guard stopped (`kill` false) or killed a target (`kind`, `arm`, `mode`, `pid`, `container`), and
    the memory numbers when memory caused it."""

    TYPE = "guard_ended_target"
    DURABLE = True
    cause: str
    kill: bool
    outcome: str
    target: dict
    took_s: float
    reason: str | None = field(default=ABSENT, metadata=OPTIONAL)
    available_gib: float | None = field(default=ABSENT, metadata=OPTIONAL)
    fill_gib_s: float | None = field(default=ABSENT, metadata=OPTIONAL)
    seconds_to_kill_floor: float | None = field(default=ABSENT, metadata=OPTIONAL)
    restart_allowed: bool | None = field(default=ABSENT, metadata=OPTIONAL)


@dataclass(frozen=True)
class GuardStopped(Event):
    """The guard exited: stopped by the runner, or the runner is gone."""

    TYPE = "guard_stopped"
    reason: str


@dataclass(frozen=True)
class GuardLost(Event):
    """The guard exited or went silent: the runner fails closed."""

    TYPE = "guard_lost"
    DURABLE = True
    reason: str


@dataclass(frozen=True)
class RestartBlocked(Event):
    """A serve start is held until memory is back above WARN (up to `wait_s`)."""

    TYPE = "restart_blocked"
    reason: str | None
    wait_s: float


@dataclass(frozen=True)
class RestartAllowed(Event):
    """Memory recovered: the held serve start goes ahead."""

    TYPE = "restart_allowed"


def _all_types() -> dict[str, type[Event]]:
    found: dict[str, type[Event]] = {}
    todo = list(Event.__subclasses__())
    while todo:
        cls = todo.pop(0)
        todo += cls.__subclasses__()
        if cls.TYPE in found:
            raise TypeError(f"event type {cls.TYPE!r} is defined twice ({found[cls.TYPE].__name__}, {cls.__name__})")
        found[cls.TYPE] = cls
    return found


EVENT_TYPES: dict[str, type[Event]] = _all_types()
DURABLE = frozenset(t for t, cls in EVENT_TYPES.items() if cls.DURABLE)


def check_event(line: dict) -> list[str]:
    """What is wrong with an event line read back: an unknown type, a field not defined, a field missing."""
    type_ = line.get("type")
    cls = EVENT_TYPES.get(type_) if isinstance(type_, str) else None
    if cls is None:
        return [f"unknown event type {type_!r}"]
    defined = {f.name: f for f in dataclasses.fields(cls)}
    problems = [f"{type_}: field {k!r} is not defined" for k in line if k not in defined and k not in ENVELOPE]
    for name, f in defined.items():
        if name not in line and not f.metadata.get("optional"):
            problems.append(f"{type_}: field {name!r} is missing")
    return problems


def markdown_table() -> str:
    """docs/architecture.md's event table: type, fields (optional ones in brackets), meaning."""
    rows = ["| type | fields | meaning |", "| --- | --- | --- |"]
    for type_, cls in EVENT_TYPES.items():
        names = [f"[`{f.name}`]" if f.metadata.get("optional") else f"`{f.name}`" for f in dataclasses.fields(cls)]
        meaning = " ".join((cls.__doc__ or "").split())
        durable = " (fsynced)" if cls.DURABLE else ""
        rows.append(f"| `{type_}` | {', '.join(names) or '—'} | {meaning}{durable} |")
    return "\n".join(rows)


if __name__ == "__main__":
    print(markdown_table())
