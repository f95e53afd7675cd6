"""The default-candidate verdict: each arm against the baseline arm.

An arm is a **default candidate** when its wall time improves on the baseline's by at least the
threshold (5% by default), its GSM8K score does not regress (it trails the baseline by no more
than the parity bound), and its TPOT p95 is not worse (within an optional tolerance) — with no
failed request in the deciding phase (failures make wall times incomparable) and a passing
mechanism gate. It is **reject** when its quality fails (GSM8K regression or floor) or its kernels
failed a correctness check; otherwise **keep opt-in**. When several arms qualify, the one with the lowest TPOT p95
(then the lowest wall mean, then plan order) stays the default candidate and the others are kept
opt-in, naming the winner. Missing numbers give `no_data` and no verdict.
"""

from __future__ import annotations

from dataclasses import dataclass

from runners.gates.result import Criterion, GateResult, combine, pct_change

DEFAULT_CANDIDATE = "default candidate"
KEEP_OPT_IN = "keep opt-in"
REJECT = "reject"


@dataclass(frozen=True)
class CandidateInput:
    """What the verdict reads for one arm; None where not measured.

    `quality_ok`, `correct_kernels` and `mechanism_ok`: False when that gate failed, None when it
    had no data. `failed_requests`: failed requests in the deciding (wall) phase.
    """

    arm: str
    wall_mean_s: float | None
    tpot_p95_ms: float | None
    gsm8k_correct: float | None
    quality_ok: bool | None = None
    correct_kernels: bool | None = None
    mechanism_ok: bool | None = None
    failed_requests: int = 0


@dataclass(frozen=True)
class CandidateRules:
    """Thresholds of the verdict."""

    min_wall_improvement_pct: float = 5.0
    gsm8k_parity: int = 2
    tpot_p95_tolerance_pct: float = 0.0


def _judge(arm: CandidateInput, base: CandidateInput, rules: CandidateRules) -> tuple[list[Criterion], dict]:
    improvement = None
    if arm.wall_mean_s is not None and base.wall_mean_s:
        improvement = (base.wall_mean_s - arm.wall_mean_s) / base.wall_mean_s * 100.0
    tpot_change = None
    if arm.tpot_p95_ms is not None and base.tpot_p95_ms:
        tpot_change = pct_change(arm.tpot_p95_ms, base.tpot_p95_ms)
    gsm_delta = None
    if arm.gsm8k_correct is not None and base.gsm8k_correct is not None:
        gsm_delta = arm.gsm8k_correct - base.gsm8k_correct
    criteria = [
        Criterion(
            None if improvement is None else improvement >= rules.min_wall_improvement_pct,
            "wall time: no mean for this arm or the baseline"
            if improvement is None
            else f"wall time: {arm.wall_mean_s:.3f} s vs baseline {base.wall_mean_s:.3f} s, "
            f"{abs(improvement):.2f}% {'faster' if improvement >= 0 else 'slower'}; "
            f"needs >= {rules.min_wall_improvement_pct:g}% faster",
        ),
        Criterion(
            None if gsm_delta is None else gsm_delta >= -rules.gsm8k_parity,
            "GSM8K: no score for this arm or the baseline"
            if gsm_delta is None
            else f"GSM8K: {gsm_delta:+g} questions vs baseline, may trail by at most {rules.gsm8k_parity}",
        ),
        Criterion(
            None if tpot_change is None else tpot_change <= rules.tpot_p95_tolerance_pct,
            "TPOT p95: no value for this arm or the baseline"
            if tpot_change is None
            else f"TPOT p95: {arm.tpot_p95_ms:.3f} ms vs baseline {base.tpot_p95_ms:.3f} ms ({tpot_change:+.2f}%); "
            f"may be worse by at most {rules.tpot_p95_tolerance_pct:g}%",
        ),
    ]
    if arm.failed_requests:
        failed = f"{arm.failed_requests} request(s) failed in the deciding phase: wall time is not comparable"
        criteria.append(Criterion(False, failed))
    if arm.mechanism_ok is False:
        criteria.append(Criterion(False, "mechanism gate failed: the arm's declared mechanism is not acceptable"))
    numbers = {
        "failed_requests": arm.failed_requests,
        "wall_mean_s": arm.wall_mean_s,
        "baseline_wall_mean_s": base.wall_mean_s,
        "wall_improvement_pct": improvement,
        "tpot_p95_ms": arm.tpot_p95_ms,
        "baseline_tpot_p95_ms": base.tpot_p95_ms,
        "tpot_p95_change_pct": tpot_change,
        "gsm8k_correct": arm.gsm8k_correct,
        "baseline_gsm8k_correct": base.gsm8k_correct,
        "gsm8k_delta": gsm_delta,
    }
    return criteria, numbers


def candidate_verdicts(
    baseline: CandidateInput, arms: list[CandidateInput], rules: CandidateRules = CandidateRules()
) -> list[GateResult]:
    """One `default-candidate` GateResult per arm in `arms` (the baseline itself is not judged)."""
    results: list[GateResult] = []
    qualified: list[tuple[CandidateInput, int]] = []
    for arm in arms:
        criteria, numbers = _judge(arm, baseline, rules)
        blockers = []
        if arm.quality_ok is False:
            blockers.append("quality gate failed")
        if arm.correct_kernels is False:
            blockers.append("kernel correctness gate failed")
        gsm = criteria[1]
        if blockers or gsm.ok is False:
            failed = tuple(blockers) + ((gsm.text,) if gsm.ok is False else ())
            results.append(GateResult("default-candidate", "fail", failed, numbers, arm=arm.arm, verdict=REJECT))
            continue
        status, failed = combine(criteria)
        if status == "no_data":
            results.append(GateResult("default-candidate", "no_data", failed, numbers, arm=arm.arm))
        elif status == "fail":
            results.append(GateResult("default-candidate", "fail", failed, numbers, arm=arm.arm, verdict=KEEP_OPT_IN))
        else:
            qualified.append((arm, len(results)))
            results.append(GateResult("default-candidate", "pass", (), numbers, arm=arm.arm, verdict=DEFAULT_CANDIDATE))
    if len(qualified) > 1:
        order = sorted(qualified, key=lambda q: (q[0].tpot_p95_ms, q[0].wall_mean_s, q[1]))
        winner = order[0][0]
        for arm, index in order[1:]:
            tie = (
                f"also qualifies, but {winner.arm} has the lower TPOT p95 "
                f"({winner.tpot_p95_ms:.3f} ms vs {arm.tpot_p95_ms:.3f} ms)"
                if winner.tpot_p95_ms != arm.tpot_p95_ms
                else f"also qualifies and ties {winner.arm} on TPOT p95; {winner.arm} wins on wall time or plan order"
            )
            old = results[index]
            results[index] = GateResult(
                old.name, "fail", (tie,), {**old.numbers, "preferred": winner.arm}, arm=arm.arm, verdict=KEEP_OPT_IN
            )
    return results
