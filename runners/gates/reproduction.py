"""Reproduction: does a run reproduce a prior run within noise?

Per arm present in both runs: each kernel's mean µs and the decode ms/token (mean TPOT of the
deciding phase) must change by no more than ±tolerance% (2% by default), and the GSM8K score by
no more than ±N questions (2 by default). A number measured on one side only (a lost trace, a
renamed kernel, a missing phase) and an arm of the prior run missing from this one cannot be
judged: the verdict is then `no_data` unless something diverged. Verdicts: `reproduces within
noise` / `diverges`. Two runs whose plans differ in the work they measured (runners/gates/plan_diff.py)
are `not comparable`: no verdict and no Δ rows, only the differences, unless the caller chose to compare
anyway (it passes no differences).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, field

from runners.gates.plan_diff import DIFFERENT_WORK, NOT_COMPARABLE, PlanDifference
from runners.gates.result import Criterion, GateResult, combine, pct_change

REPRODUCES = "reproduces within noise"
DIVERGES = "diverges"


@dataclass(frozen=True)
class ReproInput:
    """One arm of one run, as the reproduction check reads it."""

    arm: str
    kernel_us: dict[str, float] = field(default_factory=dict)
    ms_per_token: float | None = None
    gsm8k_correct: float | None = None
    wall_mean_s: float | None = None


@dataclass(frozen=True)
class DeltaRow:
    """One compared number: prior and current values, the change, and whether it is within its bound.

    `delta` is in percent for µs and ms rows and in questions for GSM8K; `within` is None when the
    row is informational (wall time) or one side is missing.
    """

    arm: str
    metric: str
    unit: str
    prior: float | None
    current: float | None
    delta: float | None
    bound: float | None
    within: bool | None

    def as_dict(self) -> dict:
        """JSON form."""
        return asdict(self)


def _pct_row(arm: str, metric: str, unit: str, prior: float | None, current: float | None, bound: float | None):
    delta = pct_change(current, prior) if prior is not None and current is not None else None
    within = None if delta is None or bound is None else abs(delta) <= bound
    return DeltaRow(arm, metric, unit, prior, current, delta, bound, within)


def delta_rows(prior: ReproInput, current: ReproInput, tolerance_pct: float, gsm8k_questions: int) -> list[DeltaRow]:
    """The Δ table of one arm: kernels (sorted by name), ms/token, GSM8K, and wall time (not judged)."""
    rows = [
        _pct_row(prior.arm, f"kernel {name}", "µs", prior.kernel_us.get(name), current.kernel_us.get(name),
                 tolerance_pct)
        for name in sorted(set(prior.kernel_us) | set(current.kernel_us))
    ]  # fmt: skip
    rows.append(_pct_row(prior.arm, "ms/token", "ms", prior.ms_per_token, current.ms_per_token, tolerance_pct))
    if prior.gsm8k_correct is not None or current.gsm8k_correct is not None:
        both = prior.gsm8k_correct is not None and current.gsm8k_correct is not None
        delta = current.gsm8k_correct - prior.gsm8k_correct if both else None  # type: ignore[operator]
        rows.append(
            DeltaRow(prior.arm, "GSM8K correct", "questions", prior.gsm8k_correct, current.gsm8k_correct, delta,
                     float(gsm8k_questions), None if delta is None else abs(delta) <= gsm8k_questions)
        )  # fmt: skip
    rows.append(_pct_row(prior.arm, "wall mean", "s", prior.wall_mean_s, current.wall_mean_s, None))
    return rows


def _describe(row: DeltaRow) -> str:
    if row.unit == "questions":
        return f"{row.arm}: {row.metric} {row.delta:+g} questions (bound ±{row.bound:g})"
    return f"{row.arm}: {row.metric} {row.delta:+.2f}% (bound ±{row.bound:g}%)"


def _side(row: DeltaRow) -> str:
    return "the prior run" if row.current is None else "this run"


def not_comparable(differences: Sequence[PlanDifference]) -> GateResult:
    """The reproduction gate of two runs that measured different work: `no_data`, verdict `not comparable`,
    each difference a criterion (what, the prior's value, this run's) and in `numbers["plan_differences"]`."""
    criteria = tuple(f"{DIFFERENT_WORK}: {d.describe()}" for d in differences)
    numbers = {"plan_differences": [d.as_dict() for d in differences]}
    return GateResult("reproduction", "no_data", criteria, numbers, verdict=NOT_COMPARABLE)


def reproduction_gate(
    prior: list[ReproInput],
    current: list[ReproInput],
    tolerance_pct: float = 2.0,
    gsm8k_questions: int = 2,
    differences: Sequence[PlanDifference] = (),
) -> tuple[GateResult, list[DeltaRow]]:
    """The reproduction verdict over arms present in both runs, and the Δ rows behind it; with `differences`
    between the two plans, `not_comparable` and no rows."""
    if differences:
        return not_comparable(differences), []
    by_name = {c.arm: c for c in current}
    rows: list[DeltaRow] = []
    for p in prior:
        if p.arm in by_name:
            rows += delta_rows(p, by_name[p.arm], tolerance_pct, gsm8k_questions)
    judged = [r for r in rows if r.bound is not None and r.within is not None]
    one_sided = [r for r in rows if r.bound is not None and r.within is None and (r.prior, r.current) != (None, None)]
    only_prior = sorted(set(p.arm for p in prior) - set(by_name))
    only_current = sorted(set(by_name) - set(p.arm for p in prior))
    criteria = [Criterion(r.within, _describe(r)) for r in judged]
    criteria += [Criterion(None, f"{r.arm}: {r.metric} measured in {_side(r)} only") for r in one_sided]
    criteria += [Criterion(None, f"arm {arm} of the prior run is missing from this run") for arm in only_prior]
    if not judged:
        criteria.append(Criterion(None, "no arm has a number measured in both runs (kernel µs, ms/token or GSM8K)"))
    status, failed = combine(criteria)
    numbers = {
        "judged": len(judged),
        "within": sum(bool(r.within) for r in judged),
        "tolerance_pct": tolerance_pct,
        "gsm8k_questions": gsm8k_questions,
        "arms_only_in_prior": only_prior,
        "arms_only_in_current": only_current,
    }
    verdict = {"pass": REPRODUCES, "fail": DIVERGES}.get(status)
    return GateResult("reproduction", status, failed, numbers, verdict=verdict), rows
