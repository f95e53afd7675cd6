"""Every configured gate over one run's results, and the verdict of each arm.

Order: quality, kernel correctness, mechanism, coherence (warning), measurement, env per arm; then
the default-candidate verdict per non-baseline arm (it reads the quality and correctness results); an
arm whose measurement gate failed gets no verdict (its timings, or the baseline's, are distorted), and
so does one whose env (or the baseline's) was not verified in a process of the target;
then reproduction against a prior run when one is given (the plan's `gates.reproduce_from`, or
`compare`): `not comparable` when the two plans measured different work (runners/gates/plan_diff.py).
A baseline arm without a number the others are judged against (wall mean, TPOT p95, GSM8K) reads
`baseline: no data`, never `baseline` as if it had been measured.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from runners.evidence.measurement import StepMeasurement
from runners.evidence.results import ArmResult, RunResults
from runners.evidence.served import served_models
from runners.gates.candidate import CandidateInput, CandidateRules, candidate_verdicts
from runners.gates.coherence import coherence_gate
from runners.gates.correctness import correctness_gate
from runners.gates.env import env_gate
from runners.gates.measurement import measurement_gate
from runners.gates.mechanism import mechanism_gate
from runners.gates.plan_diff import MeasuredWork, PlanDifference, plan_differences
from runners.gates.quality import quality_gate
from runners.gates.registry import Registry, load_registry
from runners.gates.reproduction import DeltaRow, ReproInput, reproduction_gate
from runners.gates.result import NO_VERDICT, STATUS_LABEL, GateResult
from runners.run.rundir import RunDir

BASELINE_VERDICT = "baseline"
BASELINE_NO_DATA = f"{BASELINE_VERDICT}: {STATUS_LABEL['no_data']}"  # nothing measured to judge the others against


@dataclass(frozen=True)
class GateReport:
    """All gate results of a run, each arm's verdict, and the reproduction Δ rows (if any)."""

    gates: tuple[GateResult, ...]
    verdicts: dict[str, str]
    reproduction_rows: tuple[DeltaRow, ...] = ()
    prior_run: str | None = None
    plan_differences: tuple[PlanDifference, ...] = ()  # prior vs this run; any: reproduction is not comparable


def gsm8k_correct(results: RunResults, arm: ArmResult) -> tuple[float | None, int | None]:
    """The arm's GSM8K correct count under the plan's matcher, and the questions asked."""
    phase = arm.phase(results.deciding_phases().gsm8k)
    if phase is None or phase.gsm8k is None:
        return None, None
    return phase.gsm8k.correct(results.gates.gsm8k_match), phase.gsm8k.n


def repro_inputs(results: RunResults) -> list[ReproInput]:
    """What reproduction compares for every arm of `results`."""
    deciding = results.deciding_phases()
    out = []
    for arm in results.arms:
        tpot = arm.phase(deciding.tpot)
        wall = arm.phase(deciding.wall)
        out.append(
            ReproInput(
                arm=arm.name,
                kernel_us={name: k.mean_us for name, k in arm.kernel_times.items()},
                ms_per_token=tpot.tpot_mean_ms if tpot else None,
                gsm8k_correct=gsm8k_correct(results, arm)[0],
                wall_mean_s=wall.wall_mean_s if wall else None,
            )
        )
    return out


def measured_work(results: RunResults) -> MeasuredWork:
    """What `results` measured, for plan_differences: its plan copy, provenance's datasets, the models served."""
    records = results.provenance.get("datasets")
    datasets = tuple(r for r in records if isinstance(r, dict)) if isinstance(records, list) else ()
    return MeasuredWork(results.plan, datasets, served_models(RunDir(results.root)))


def work_differences(prior: RunResults, current: RunResults) -> list[PlanDifference]:
    """What differs between the work `prior` (A) and `current` (B) measured; empty when they are comparable."""
    return plan_differences(measured_work(prior), measured_work(current))


def baseline_label(base: CandidateInput) -> str:
    """`baseline`, or `baseline: no data` when it has none of the numbers the other arms are judged against."""
    measured = (base.wall_mean_s, base.tpot_p95_ms, base.gsm8k_correct)
    return BASELINE_VERDICT if any(v is not None for v in measured) else BASELINE_NO_DATA


def deciding_measurements(results: RunResults, arm: ArmResult) -> tuple[StepMeasurement, ...]:
    """The cross-checks of the arm's done steps in the deciding wall-time and TPOT phases."""
    deciding = results.deciding_phases()
    names = dict.fromkeys(n for n in (deciding.wall, deciding.tpot) if n)
    return tuple(m for name in names if (phase := arm.phase(name)) for m in phase.measurements)


def registry_for(results: RunResults) -> Registry:
    """The registries the run's plan names (plan-relative), else configs/registries."""
    directory = results.gates.registries
    return load_registry(results.resolve(directory) if directory else None)


def evaluate_gates(results: RunResults, registry: Registry, prior: RunResults | None = None) -> GateReport:
    """Run every gate over `results` (and reproduction against `prior`); see the module docstring."""
    g = results.gates
    deciding = results.deciding_phases()
    base = results.arm(results.baseline)
    base_gsm = gsm8k_correct(results, base)[0] if base else None
    base_measured = deciding_measurements(results, base) if base else ()
    withheld: set[str] = set()
    gates: list[GateResult] = []
    candidates: list[CandidateInput] = []
    baseline_input = None
    for arm in results.arms:
        correct, questions = gsm8k_correct(results, arm)
        is_base = arm.name == results.baseline
        quality = quality_gate(
            arm.name, correct, questions, base_gsm, is_baseline=is_base, floor=g.gsm8k_floor, parity=g.gsm8k_parity,
            match=g.gsm8k_match,
        )  # fmt: skip
        correctness = correctness_gate(arm.name, arm.kernel_checks)
        mechanism = mechanism_gate(replace(arm.declared, acceptance_rate=arm.acceptance_rate), registry)
        long_decode = arm.phase(deciding.long_decode)
        checked = long_decode.coherence_checked if long_decode else 0
        coherence = coherence_gate(arm.name, checked, long_decode.coherence_warned if long_decode else 0)
        measured = deciding_measurements(results, arm)
        measurement = measurement_gate(arm.name, measured, results.baseline, () if is_base else base_measured)
        env = env_gate(
            arm.name, arm.env_status, arm.env_where, arm.env_reason, None if is_base or base is None else base.name,
            base.env_status if base else None, base.env_reason if base else "",
        )  # fmt: skip
        if measurement.status == "fail" or env.status == "fail":
            withheld.add(arm.name)
        gates += [quality, correctness, mechanism, coherence, measurement, env]
        wall, tpot = arm.phase(deciding.wall), arm.phase(deciding.tpot)
        entry = CandidateInput(
            arm=arm.name,
            wall_mean_s=wall.wall_mean_s if wall else None,
            tpot_p95_ms=tpot.stats.tpot_p95_ms if tpot else None,
            gsm8k_correct=correct,
            quality_ok={"pass": True, "fail": False}.get(quality.status),
            correct_kernels={"pass": True, "fail": False}.get(correctness.status),
            mechanism_ok={"pass": True, "fail": False}.get(mechanism.status),
            failed_requests=wall.stats.failed if wall else 0,
            wall_uncertain_s=wall.wall_uncertain_s if wall else 0.0,
        )
        if is_base:
            baseline_input = entry
        else:
            candidates.append(entry)
    verdicts = {a.name: NO_VERDICT for a in results.arms}
    if baseline_input is not None:
        verdicts[baseline_input.arm] = baseline_label(baseline_input)
        rules = CandidateRules(g.min_wall_improvement_pct, g.gsm8k_parity, g.tpot_p95_tolerance_pct)
        for result in candidate_verdicts(baseline_input, candidates, rules):
            gates.append(result)
            verdicts[result.arm or ""] = result.verdict or NO_VERDICT
    verdicts.update(dict.fromkeys(withheld, NO_VERDICT))
    rows: tuple[DeltaRow, ...] = ()
    differences: list[PlanDifference] = []
    if prior is not None:
        differences = work_differences(prior, results)
        repro, delta = reproduction_gate(
            repro_inputs(prior), repro_inputs(results), g.reproduce_tolerance_pct, g.reproduce_gsm8k_questions,
            differences,
        )  # fmt: skip
        gates.append(repro)
        rows = tuple(delta)
    return GateReport(tuple(gates), verdicts, rows, prior.run_id if prior else None, tuple(differences))
