"""What a run measured, read back from its run directory alone.

`load_run_results` is the one reader behind gates, `report`, `compare` and the results database:
it needs nothing but the run directory (the plan copy, DONE markers, phase.json, requests.jsonl,
effective.json, provenance.json, events.jsonl), so evidence can be regenerated at any time, on
any machine, after the fact. Pooling rules:
- a phase's percentiles are recomputed over the requests of all its done repetitions, never
  averaged across repetitions; its wall time per repetition is kept for mean and spread;
- a step's wall time is phase.json `stats.wall_s`, which leaves out the time a pause kept the target
  idle; the time a pause overlapped requests in flight stays in it and is kept per repetition as
  the wall time's uncertainty (runners/replay/pauses.py); requests in flight during a pause are
  left out of the latency figures;
- a GSM8K score is the mean number of correct answers per done repetition (one repetition is the
  usual case, so it is an integer count out of the questions asked).
"""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass, field
from pathlib import Path

from engine.config_file import ConfigFileError, load_toml_model
from runners.evidence.kernel_checks import KernelCheck
from runners.evidence.kernel_times import KernelTime, arm_kernel_times
from runners.evidence.limitations import known_limitations
from runners.evidence.measurement import StepMeasurement, step_measurement
from runners.evidence.mechanism_input import MechanismInput
from runners.evidence.step_files import number, phase_record, recorded_pause, request_records, section, step_wall_s
from runners.plan.model import Plan
from runners.plan.sections import GatesSpec
from runners.plan.steps import StepKey
from runners.replay.metrics import PhaseStats, percentile, phase_stats, tpot_ms, ttft_ms
from runners.replay.pauses import PauseAccount
from runners.replay.records import RequestRecord
from runners.run.event_log import status_label
from runners.run.files import read_json
from runners.run.redact import env_policy
from runners.run.rundir import RunDir, RunDirError


@dataclass(frozen=True)
class Gsm8kScore:
    """Mean correct answers per repetition under both lm-eval matchers, out of `n` questions each."""

    strict: float
    flexible: float
    n: int

    def correct(self, match: str) -> float:
        """Correct answers under `match` ("strict" or "flexible")."""
        return self.flexible if match == "flexible" else self.strict


@dataclass(frozen=True)
class PhaseResult:
    """One phase of one arm: every done repetition pooled."""

    phase: str
    kind: str
    mode: str
    reps_done: int
    reps_total: int
    wall_s: tuple[float, ...]
    stats: PhaseStats
    ttft_ms: tuple[float, ...] = ()
    tpot_ms: tuple[float, ...] = ()
    gsm8k: Gsm8kScore | None = None
    coherence_checked: int = 0
    coherence_warned: int = 0
    spec_accepted: float | None = None
    spec_drafted: float | None = None
    measurements: tuple[StepMeasurement, ...] = ()  # per done repetition: client vs server latency
    pauses: tuple[PauseAccount, ...] = ()  # per done repetition: what a pause did to it

    @property
    def wall_mean_s(self) -> float | None:
        """Mean wall time of one repetition (the idle part of pauses left out)."""
        return statistics.fmean(self.wall_s) if self.wall_s else None

    @property
    def wall_uncertain_s(self) -> float:
        """How much shorter the mean wall time could have been without pauses: the mean of the repetitions'
        time paused with requests in flight (0 without pauses)."""
        return statistics.fmean(p.in_flight_s for p in self.pauses) if self.pauses else 0.0

    @property
    def paused_s(self) -> float:
        """Seconds dispatch was paused during the done repetitions."""
        return math.fsum(p.paused_s for p in self.pauses)

    @property
    def paused_idle_s(self) -> float:
        """Of `paused_s`, the seconds left out of the wall times (nothing was in flight)."""
        return math.fsum(p.idle_s for p in self.pauses)

    @property
    def wall_std_s(self) -> float | None:
        """Sample standard deviation of the repetitions' wall times (None below two repetitions)."""
        return statistics.stdev(self.wall_s) if len(self.wall_s) > 1 else None

    @property
    def ttft_p99_ms(self) -> float | None:
        """TTFT p99 over every successful request of the phase."""
        return percentile(self.ttft_ms, 99)

    @property
    def tpot_mean_ms(self) -> float | None:
        """Mean TPOT: the phase's ms per output token after the first."""
        return statistics.fmean(self.tpot_ms) if self.tpot_ms else None


@dataclass(frozen=True)
class ArmResult:
    """One arm: what it declared in the plan and what was measured."""

    name: str
    env: dict[str, str]
    declared: MechanismInput  # the mechanism fields as the plan declares them
    env_status: str  # verified | unverified | mismatch | not started
    effective_env: dict[str, str]
    phases: dict[str, PhaseResult]
    primary: PhaseStats
    kernel_checks: tuple[KernelCheck, ...] | None = None  # None: the target reported none
    kernel_times: dict[str, KernelTime] = field(default_factory=dict)
    env_where: str | None = None  # the process that verified the env (an EngineCore pid, /debug/config)
    env_reason: str = ""  # why the env is unverified or mismatched

    @property
    def acceptance_rate(self) -> float | None:
        """Speculative decoding acceptance: accepted / drafted tokens from the server's metrics, else declared."""
        accepted = sum(p.spec_accepted or 0.0 for p in self.phases.values())
        drafted = sum(p.spec_drafted or 0.0 for p in self.phases.values())
        return accepted / drafted if drafted > 0 else self.declared.acceptance_rate

    @property
    def primary_paused_s(self) -> tuple[float, float]:
        """(seconds paused, of them left out of the wall times) over the arm's done primary steps."""
        primary = [p for p in self.phases.values() if p.mode == "primary"]
        return math.fsum(p.paused_s for p in primary), math.fsum(p.paused_idle_s for p in primary)

    def phase(self, name: str | None) -> PhaseResult | None:
        """The named phase's result, or None when the name is None or the phase has no done repetition."""
        result = self.phases.get(name) if name else None
        return result if result is not None and result.reps_done else None


@dataclass(frozen=True)
class DecidingPhases:
    """The phases the gates read, after the plan's defaults are applied (None where the plan has none)."""

    gsm8k: str | None
    wall: str | None
    tpot: str | None
    long_decode: str | None


@dataclass(frozen=True)
class RunResults:
    """Everything gates and reports need, from one run directory."""

    run_id: str
    plan: Plan
    status: str
    root: Path
    arms: tuple[ArmResult, ...]
    limitations: tuple[str, ...]
    provenance: dict
    plan_dir: Path | None = None
    started_at: float | None = None
    ended_at: float | None = None

    @property
    def gates(self) -> GatesSpec:
        """The plan's gate settings."""
        return self.plan.gates

    @property
    def baseline(self) -> str:
        """The baseline arm's name."""
        return self.plan.gates.baseline or self.plan.arms[0].name

    def arm(self, name: str) -> ArmResult | None:
        """The named arm, or None."""
        return next((a for a in self.arms if a.name == name), None)

    def deciding_phases(self) -> DecidingPhases:
        """The phases that decide each gate: the plan's choice, else the defaults in GatesSpec's docstring."""
        return deciding_phases(self.plan)

    def resolve(self, relative: str) -> Path:
        """A plan-relative path made absolute (against the original plan's directory)."""
        path = Path(relative).expanduser()
        return path if path.is_absolute() or self.plan_dir is None else (self.plan_dir / path).resolve()


def deciding_phases(plan: Plan) -> DecidingPhases:
    """The gate-deciding phases of `plan` (GatesSpec's docstring gives the defaults)."""
    g = plan.gates
    primary = [p for p in plan.phases if p.mode == "primary"]
    gsm8k = g.gsm8k_phase or next((p.name for p in primary if p.kind == "gsm8k"), None)
    timed = [p for p in primary if p.kind != "gsm8k"]
    most = max(timed, key=lambda p: p.repeats).repeats if timed else 0
    wall = g.wall_phase or next((p.name for p in timed if p.repeats == most), None)
    long_decode = g.long_decode_phase or next((p.name for p in primary if p.kind == "longdecode"), None)
    return DecidingPhases(gsm8k, wall, g.tpot_phase or wall, long_decode)


def _gsm8k(runs: list[dict]) -> Gsm8kScore | None:
    scores = [(number(g.get("strict_correct")), number(g.get("flexible_correct")), number(g.get("n"))) for g in runs]
    sound = [(st, fl, n) for st, fl, n in scores if st is not None and fl is not None and n is not None]
    if not sound:
        return None
    return Gsm8kScore(
        strict=statistics.fmean(st for st, _, _ in sound),
        flexible=statistics.fmean(fl for _, fl, _ in sound),
        n=int(sound[0][2]),
    )


def _sum_optional(values: list[float | None]) -> float | None:
    present = [v for v in values if v is not None]
    return math.fsum(present) if present else None


def _phase_result(
    run: RunDir, plan: Plan, arm: str, phase_name: str
) -> tuple[PhaseResult, list[RequestRecord], list[str]]:
    """One phase of one arm; done steps whose evidence is damaged are left out and named in the notes."""
    phase = plan.phase(phase_name)
    steps = [StepKey(arm, phase.mode, phase.name, rep) for rep in range(phase.repeats)]
    records: list[RequestRecord] = []
    walls: list[float] = []
    gsm_runs: list[dict] = []
    notes: list[str] = []
    checked = warned = 0
    accepted: list[float | None] = []
    drafted: list[float | None] = []
    measurements: list[StepMeasurement] = []
    pauses: list[PauseAccount] = []
    for step in (s for s in steps if run.is_done(s)):
        record = phase_record(run, step)
        wall = step_wall_s(record)
        if wall is None:
            notes.append(f"{step.path}: phase.json is missing, damaged or has no wall time; the step is left out")
            continue
        recs, bad = request_records(run, step)
        if bad:
            notes.append(f"{step.path}: {bad} line(s) of requests.jsonl could not be read and are left out")
        counted = number(section(record, "stats").get("requests"))
        if counted is not None and len(recs) + bad < counted:
            notes.append(f"{step.path}: requests.jsonl holds {len(recs) + bad} of the {int(counted)} requests "
                         "phase.json counted (the file lost lines); the step's numbers use what is left")  # fmt: skip
        records += recs
        walls.append(wall)
        if "gsm8k" in record:
            gsm_runs.append(section(record, "gsm8k"))
        coherence = section(record, "coherence")
        checked += int(number(coherence.get("checked")) or 0)
        warned += int(number(coherence.get("with_warnings")) or 0)
        metrics = section(record, "server_metrics")
        accepted.append(number(metrics.get("spec_decode_num_accepted_tokens_increase")))
        drafted.append(number(metrics.get("spec_decode_num_draft_tokens_increase")))
        measurements.append(step_measurement(step.path, record))
        pauses.append(recorded_pause(record))
    gsm = _gsm8k(gsm_runs)
    if gsm_runs and gsm is None:
        notes.append(f"{arm}/{phase.mode}/{phase.name}: GSM8K results are damaged in every repetition; no score")
    timed = [r for r in records if r.status == "ok" and not r.during_pause]  # as phase_stats' latency figures
    result = PhaseResult(
        phase=phase.name,
        kind=phase.kind,
        mode=phase.mode,
        reps_done=len(walls),
        reps_total=len(steps),
        wall_s=tuple(walls),
        stats=phase_stats(records, math.fsum(walls), phase.percentiles),
        ttft_ms=tuple(v for v in map(ttft_ms, timed) if v is not None),
        tpot_ms=tuple(v for v in map(tpot_ms, timed) if v is not None),
        gsm8k=gsm,
        coherence_checked=checked,
        coherence_warned=warned,
        spec_accepted=_sum_optional(accepted),
        spec_drafted=_sum_optional(drafted),
        measurements=tuple(measurements),
        pauses=tuple(pauses),
    )
    return result, records, notes


def _effective(run: RunDir, arm: str) -> tuple[str, dict[str, str], tuple[KernelCheck, ...] | None, dict]:
    """(status, the env the target reported, its kernel checks, effective.json) of `arm`."""
    try:
        eff = read_json(run.effective_env_path(arm))
    except (OSError, ValueError):
        return "not started", {}, None, {}
    if not isinstance(eff, dict):
        return "not started", {}, None, {}
    reported = eff.get("reported")
    env = {str(k): str(v) for k, v in reported.items()} if isinstance(reported, dict) else {}
    if eff.get("status") in ("verified", "unverified", "mismatch"):
        status = eff["status"]
    elif eff.get("mismatches"):  # written before the status field
        status = "mismatch"
    elif reported is not None and not eff.get("unverified_keys"):
        status = "verified"
    else:
        status = "unverified"
    checks = None
    raw = eff.get("kernel_checks")
    if isinstance(raw, list):
        checks = tuple(_kernel_check(c) for c in raw if isinstance(c, dict))
    return status, env, checks, eff


def _kernel_check(raw: dict) -> KernelCheck:
    return KernelCheck(
        kernel=str(raw.get("kernel", "?")),
        check=str(raw.get("check", "?")),
        passed=raw.get("passed") is True,
        max_abs=number(raw.get("max_abs")),
        tolerance=number(raw.get("tolerance")),
        detail=str(raw.get("detail", "")),
    )


def load_plan_copy(run: RunDir) -> Plan:
    """The run's copy of its plan, validated as a model only (datasets may be gone by report time)."""
    try:
        return load_toml_model(run.plan_toml, Plan)
    except FileNotFoundError:
        raise RunDirError(f"{run.plan_toml} is missing; the run directory is incomplete") from None
    except ConfigFileError:
        raise
    except OSError as exc:
        raise RunDirError(f"{run.plan_toml}: {exc}") from None


def _run_info(run: RunDir) -> dict:
    try:
        return run.info()  # a damaged run.json raises DamagedRunFile, a RunDirError saying what to do
    except OSError as exc:
        raise RunDirError(f"{run.run_json} cannot be read ({exc}); the run directory is damaged") from None


def load_run_results(root: Path) -> RunResults:
    """Read everything gates and reports need from the run directory at `root`.

    Damaged evidence (unreadable phase.json or request lines, requests.jsonl that lost lines, oversized
    traces, a broken state.json, an incomplete event log) is left out and listed among the limitations; the
    status is `status_label`'s (never "finished" for a run whose event log was cut). Raises RunDirError when
    `root` is not a readable run directory, ConfigFileError when its plan copy is invalid.
    """
    run = RunDir(root)
    if not run.is_run():
        raise RunDirError(f"{root} is not a run directory (no run.json)")
    info = _run_info(run)
    plan = load_plan_copy(run)
    notes: list[str] = []
    state = run.read_state()
    status = status_label(run, state)
    if state is not None and state.status == "damaged":
        notes.append(state.reason)
        state = None  # its times are not known
    arms = []
    policy = env_policy(plan)
    for spec in plan.arms:
        phases: dict[str, PhaseResult] = {}
        primary_records: list[RequestRecord] = []
        primary_wall = 0.0
        for phase in plan.phases:
            result, records, phase_notes = _phase_result(run, plan, spec.name, phase.name)
            phases[phase.name] = result
            notes += phase_notes
            if phase.mode == "primary":
                primary_records += records
                primary_wall += math.fsum(result.wall_s)
        env_status, effective, checks, eff = _effective(run, spec.name)
        kernel_times, trace_notes = arm_kernel_times(run, plan, spec.name)
        notes += trace_notes
        arms.append(
            ArmResult(
                name=spec.name,
                env=policy.env(spec.env) or {},  # what summary.md/json show: runners/run/redact.py
                declared=MechanismInput.declared_by(spec),
                env_status=env_status,
                effective_env=effective,
                phases=phases,
                primary=phase_stats(primary_records, primary_wall),
                kernel_checks=checks,
                kernel_times=kernel_times,
                env_where=eff.get("verified_by") if isinstance(eff.get("verified_by"), str) else None,
                env_reason=str(eff.get("reason") or ""),
            )
        )
    try:
        provenance = read_json(run.provenance)
    except (OSError, ValueError):
        provenance = {}
    return RunResults(
        run_id=str(info.get("run_id", run.root.name)),
        plan=plan,
        status=status,
        root=run.root,
        arms=tuple(arms),
        limitations=(*known_limitations(run, plan), *notes),
        provenance=provenance if isinstance(provenance, dict) else {},
        plan_dir=Path(str(info["plan_dir"])) if info.get("plan_dir") else None,
        started_at=number(state.started_at) if state else None,
        ended_at=number(state.ended_at) if state else None,
    )
