"""Every event type of `events.jsonl` and its fields: the one definition emitters, readers and docs use.

An event is a frozen dataclass; its class docstring is what the event means and its fields are the
line's fields (after `v`, `t` and `type`). Fields declared with `OPTIONAL` metadata are left out of
the line when they were not given (the line then reads as it did before the field existed); every
other field, and an optional one given as None, is written, None as null. Step objects are written
as `{"arm", "mode", "phase", "rep"}`.
`check_event` says what is wrong with a line read back; `parse_event` reads a line back as its event (the one
reader every view uses); docs/architecture.md's event table is `markdown_table()` (a test keeps the two equal).

Reading back is as tolerant as the schema says: an unknown type, and fields a type does not define, are
ignored. A field missing from the line takes its default where it has one (an optional one reads as not
given), else None where its type allows None (older lines left out null fields); a line of a known type that
still lacks a field, or has one of the wrong type, or has no time, is an `UnreadableEvent` that names what is
wrong: readers fold nothing from it, and the console says so once per type.
"""

from __future__ import annotations

import dataclasses
import math
import types
import typing
from collections.abc import Callable
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
class RunDirUnwritable(Event):
    """An earlier session's runner could not write its run directory (`reason`: a full disk, say) during `step` at
    `at` and stopped there; with state.json and this log unwritable it kept the incident in `incident.slot`, which
    this session read back, recorded here and blanked."""

    TYPE = "run_dir_unwritable"
    DURABLE = True
    reason: str
    step: dict | None
    at: float | None


@dataclass(frozen=True)
class ControlRefused(Event):
    """A control file (`control/abort.json`, `pause.json`) written by another uid than the run's owner was removed
    unread: only the owner drives a run; `detail` names the file and both uids."""

    TYPE = "control_refused"
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
    """The target failed to start or answer; `reason` includes the last lines of serve.log. A start no retry can
    change (no such image, no GPU runtime, a bad mount) also ends the run, resumable."""

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
class StallSuspected(Event):
    """No stream got a chunk for `quiet_s` (over `suspect_s`, half the phase's `stall_s`) while `in_flight` requests
    waited, and /metrics showed no generated token (`tokens`, `metrics` as in `engine_stalled`): dispatch is held, no
    new request starts, until `stall_cleared` or `engine_stalled`."""

    TYPE = "stall_suspected"
    step: StepKey
    quiet_s: float
    suspect_s: float
    stall_s: float
    in_flight: int
    tokens: float | None
    metrics: str


@dataclass(frozen=True)
class StallCleared(Event):
    """The suspected stall ended before `stall_s`: `why` (a stream received bytes, or the generation-token counter
    moved); dispatch continues after `held_s` held."""

    TYPE = "stall_cleared"
    step: StepKey
    held_s: float
    why: str


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


@dataclass(frozen=True)
class LoggedEvent:
    """An events.jsonl line read back as its event, with the time it was written (`t`, unix seconds)."""

    t: float
    event: Event


@dataclass(frozen=True)
class UnreadableEvent:
    """An events.jsonl line that is not an event this version reads: a type it does not know (readers ignore
    it, as the schema says), or a known type whose fields do not fit it (`problems` says which; readers fold
    nothing from it). `t` is the line's time where it has one."""

    type: str | None
    t: float | None
    problems: tuple[str, ...]

    @property
    def known(self) -> bool:
        """Whether the line's type is defined (its fields are what is wrong), not a type readers ignore."""
        return self.type in EVENT_TYPES


ReadEvent = LoggedEvent | UnreadableEvent

_WRONG: Any = object()  # what a field reader returns for a value of the wrong type


@dataclass(frozen=True, slots=True)
class _FieldReader:
    """How one field of an event type is read back: its type as words, its default (if any), whether it may be
    None, and `read`, which returns the value as the field holds it (a step object as a StepKey) or _WRONG."""

    name: str
    expected: str
    read: Callable[[object], object]
    default: Callable[[], object] | None
    nullable: bool
    optional: bool


def _reader(hint: object) -> Callable[[object], object]:
    """The reader of a field's type; every type an event field uses has one (a new one fails at import)."""
    args = typing.get_args(hint)
    origin = typing.get_origin(hint)
    if origin in (types.UnionType, typing.Union):
        members = [a for a in args if a is not type(None)]
        if len(members) == 1:  # `X | None`, every union events use: the one check a 2,000-lines/s tail can afford
            member = _reader(members[0])
            return lambda v: None if v is None else member(v)
        readers = [_reader(a) for a in args]
        return lambda v: next((out for out in (r(v) for r in readers) if out is not _WRONG), _WRONG)
    if origin is list and args:
        item = _reader(args[0])

        def items(v: object) -> object:
            if not isinstance(v, list):
                return _WRONG
            out = [item(x) for x in v]
            return _WRONG if any(x is _WRONG for x in out) else out

        return items
    simple: dict[object, Callable[[object], object]] = {
        type(None): lambda v: None if v is None else _WRONG,
        bool: lambda v: v if isinstance(v, bool) else _WRONG,
        int: lambda v: v if isinstance(v, int) and not isinstance(v, bool) else _WRONG,
        float: lambda v: (
            v if isinstance(v, float) else float(v) if isinstance(v, int) and not isinstance(v, bool) else _WRONG
        ),
        str: lambda v: v if isinstance(v, str) else _WRONG,
        dict: lambda v: v if isinstance(v, dict) else _WRONG,
        list: lambda v: v if isinstance(v, list) else _WRONG,
        StepKey: _step_key,
    }
    read = simple.get(origin if origin is dict else hint)
    if read is None:
        raise TypeError(f"an event field of type {hint!r} has no reader in runners/run/event_types.py")
    return read


def _step_key(value: object) -> object:
    """A step object (`{"arm", "mode", "phase", "rep"}`) as a StepKey, or _WRONG."""
    if not isinstance(value, dict):
        return _WRONG
    arm, mode, phase, rep = (value.get(k) for k in ("arm", "mode", "phase", "rep"))
    if not all(isinstance(x, str) for x in (arm, mode, phase)) or not isinstance(rep, int) or isinstance(rep, bool):
        return _WRONG
    return StepKey(arm, mode, phase, rep)


def _type_words(hint: object) -> str:
    """A field's type as a problem names it: `int`, `float | None`, `list[str]`, a step."""
    if hint is StepKey:
        return "a step {arm, mode, phase, rep}"
    return hint.__name__ if isinstance(hint, type) else str(hint)


def _constant(value: object) -> Callable[[], object]:
    """A default that is always `value` (immutable: None, ABSENT)."""
    return lambda: value


def _field_readers(cls: type[Event]) -> tuple[_FieldReader, ...]:
    """How each field of `cls` is read back, worked out once at import."""
    hints = typing.get_type_hints(cls)
    out = []
    for f in dataclasses.fields(cls):
        hint = hints[f.name]
        if f.default is not dataclasses.MISSING:
            default: Callable[[], object] | None = _constant(f.default)
        elif f.default_factory is not dataclasses.MISSING:
            default = f.default_factory
        else:
            default = None
        nullable = type(None) in typing.get_args(hint)
        optional = bool(f.metadata.get("optional"))
        out.append(_FieldReader(f.name, _type_words(hint), _reader(hint), default, nullable, optional))
    return tuple(out)


_READERS: dict[type[Event], tuple[_FieldReader, ...]] = {cls: _field_readers(cls) for cls in EVENT_TYPES.values()}


def _short(value: object) -> str:
    """A value as a problem quotes it: its repr, cut at 60 characters."""
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _read_fields(cls: type[Event], line: dict) -> tuple[dict[str, object], list[_FieldReader], list[str]]:
    """The fields of `line` that `cls` defines, read as it holds them; those missing; what is wrong with those
    present."""
    values: dict[str, object] = {}
    missing: list[_FieldReader] = []
    wrong: list[str] = []
    for field_ in _READERS[cls]:
        name = field_.name
        if name not in line:
            missing.append(field_)
            continue
        value = field_.read(line[name])
        if value is _WRONG:
            wrong.append(f"{cls.TYPE}: field {name!r} is not {field_.expected}: {_short(line[name])}")
        else:
            values[name] = value
    return values, missing, wrong


def _time(value: object) -> float | None:
    """A line's `t` as a float, or None when it is not a finite number."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value) if math.isfinite(value) else None


def check_event(line: dict) -> list[str]:
    """What is wrong with an event line read back: an unknown type, a field not defined, a field missing, a
    field of the wrong type. Emitters must write lines without any (the suite checks every line a test left)."""
    type_ = line.get("type")
    cls = EVENT_TYPES.get(type_) if isinstance(type_, str) else None
    if cls is None:
        return [f"unknown event type {type_!r}"]
    defined = {f.name for f in _READERS[cls]}
    problems = [f"{type_}: field {k!r} is not defined" for k in line if k not in defined and k not in ENVELOPE]
    _values, missing, wrong = _read_fields(cls, line)
    problems += [f"{type_}: field {f.name!r} is missing" for f in missing if not f.optional]
    return problems + wrong


def parse_event(line: object) -> ReadEvent:
    """A decoded events.jsonl line as its event with its time, or an UnreadableEvent saying why it is not one.

    Never raises. Fields the type does not define are ignored. A missing field takes its default (an optional
    one reads as not given), else None where its type allows None (older lines left null fields out); any other
    missing field, a field of the wrong type, or a line without a time makes the line unreadable.
    """
    if not isinstance(line, dict):
        return UnreadableEvent(None, None, (f"not a JSON object: {_short(line)}",))
    type_, t = line.get("type"), _time(line.get("t"))
    cls = EVENT_TYPES.get(type_) if isinstance(type_, str) else None
    if cls is None:
        return UnreadableEvent(type_ if isinstance(type_, str) else None, t, (f"unknown event type {type_!r}",))
    values, missing, problems = _read_fields(cls, line)
    for field_ in missing:
        if field_.default is not None:
            values[field_.name] = field_.default()
        elif field_.nullable:
            values[field_.name] = None
        else:
            problems.append(f"{type_}: field {field_.name!r} is missing")
    if t is None:
        problems.insert(0, f"{type_}: t is not a time: {_short(line.get('t'))}")
    if problems:
        return UnreadableEvent(type_, t, tuple(problems))
    return LoggedEvent(t, cls(**values))


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
