"""The default-candidate verdict: each arm against the baseline arm.

An arm is a **default candidate** when its wall time improves on the baseline's by at least the
threshold (5% by default), its GSM8K score does not regress (it trails the baseline by no more
than the parity bound), and its TPOT p95 is not worse (within an optional tolerance) — with no
failed request in the deciding phase (failures make wall times incomparable) and a passing
mechanism gate. It is **reject** when its quality fails (GSM8K regression or floor) or its kernels
failed a correctness check; otherwise **keep opt-in**. When several arms qualify, the one with the lowest TPOT p95
(then the lowest wall mean, then plan order) stays the default candidate and the others are kept
opt-in, naming the winner. Missing numbers give `no_data` and no verdict.

A pause (runners/replay/pauses.py) leaves its idle time out of the wall means already; the time it
overlapped requests in flight stays in, so an arm's unpaused wall mean lies in [mean - uncertain,
mean]. The wall criterion is judged at both ends of the arm's and the baseline's ranges: the same
answer at both is the answer; different answers leave the criterion unjudged (`no_data`, no
verdict) with the range in its text. TPOT p95 already leaves out the requests in flight during a pause.
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
    had no data. `failed_requests`: failed requests in the deciding (wall) phase. `wall_uncertain_s`:
    how much shorter the wall mean could have been without its pauses (module docstring).
    """

    arm: str
    wall_mean_s: float | None
    tpot_p95_ms: float | None
    gsm8k_correct: float | None
    quality_ok: bool | None = None
    correct_kernels: bool | None = None
    mechanism_ok: bool | None = None
    failed_requests: int = 0
    wall_uncertain_s: float = 0.0


@dataclass(frozen=True)
class CandidateRules:
    """Thresholds of the verdict."""

    min_wall_improvement_pct: float = 5.0
    gsm8k_parity: int = 2
    tpot_p95_tolerance_pct: float = 0.0


def improvement_range(arm: CandidateInput, base: CandidateInput) -> tuple[float, float] | None:
    """(lowest, highest) wall improvement in % over the baseline, (B - A) / B * 100, as A ranges over
    [arm mean - arm uncertain, arm mean] and B over [baseline mean - its uncertain, baseline mean];
    None when a mean is missing or a range reaches 0 s."""
    a, b = arm.wall_mean_s, base.wall_mean_s
    if a is None or b is None:
        return None
    a_low, b_low = a - arm.wall_uncertain_s, b - base.wall_uncertain_s
    if a_low <= 0 or b_low <= 0:
        return None
    return (b_low - a) / b_low * 100.0, (b - a_low) / b * 100.0


def _wall_criterion(arm: CandidateInput, base: CandidateInput, improvement: float, rules: CandidateRules) -> Criterion:
    needs = f"needs >= {rules.min_wall_improvement_pct:g}% faster"
    said = (
        f"wall time: {arm.wall_mean_s:.3f} s vs baseline {base.wall_mean_s:.3f} s, "
        f"{abs(improvement):.2f}% {'faster' if improvement >= 0 else 'slower'}"
    )
    if not (arm.wall_uncertain_s or base.wall_uncertain_s):
        return Criterion(improvement >= rules.min_wall_improvement_pct, f"{said}; {needs}")
    span = improvement_range(arm, base)
    paused = (
        f"dispatch was paused with requests in flight (wall mean up to {arm.wall_uncertain_s:.3f} s shorter "
        f"for this arm, {base.wall_uncertain_s:.3f} s for the baseline, without the pause)"
    )
    if span is None:
        return Criterion(None, f"{said}; {paused}: the change cannot be bounded; no verdict on wall time")
    low, high = span
    at_low, at_high = low >= rules.min_wall_improvement_pct, high >= rules.min_wall_improvement_pct
    between = f"the change lies between {low:+.2f}% and {high:+.2f}%"
    if at_low != at_high:
        return Criterion(
            None,
            f"{said}; {paused}: {between}, on both sides of the {rules.min_wall_improvement_pct:g}% needed; "
            "no verdict on wall time: measure the step again without pausing",
        )
    return Criterion(at_low, f"{said}; {paused}: {between}, {needs} either way")


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
        Criterion(None, "wall time: no mean for this arm or the baseline")
        if improvement is None
        else _wall_criterion(arm, base, improvement, rules),
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
        "wall_uncertain_s": arm.wall_uncertain_s,
        "baseline_wall_uncertain_s": base.wall_uncertain_s,
        "wall_improvement_range_pct": list(span) if (span := improvement_range(arm, base)) else None,
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
