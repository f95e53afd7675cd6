"""The quality gate: a GSM8K floor and parity with the baseline arm, in questions."""

from __future__ import annotations

from runners.gates.result import Criterion, GateResult, combine


def quality_gate(
    arm: str,
    correct: float | None,
    questions: int | None,
    baseline_correct: float | None,
    *,
    is_baseline: bool,
    floor: int | None,
    parity: int,
    match: str = "strict",
) -> GateResult:
    """GSM8K `correct` >= `floor` (when set) and, unless `arm` is the baseline, >= baseline - `parity`.

    Parity is one-sided: scoring above the baseline never fails it. Without a score the gate is no_data.
    """
    criteria = []
    if correct is None:
        criteria.append(Criterion(None, "GSM8K: no score for this arm (no GSM8K phase done)"))
    if correct is not None and floor is not None:
        criteria.append(
            Criterion(correct >= floor, f"GSM8K floor: {correct:g}/{questions} correct ({match}), needs >= {floor}")
        )
    if correct is not None and not is_baseline:
        if baseline_correct is None:
            criteria.append(Criterion(None, "GSM8K parity: the baseline arm has no score"))
        else:
            criteria.append(
                Criterion(
                    correct >= baseline_correct - parity,
                    f"GSM8K parity: {correct:g} vs baseline {baseline_correct:g} ({match}), "
                    f"may trail by at most {parity}",
                )
            )
    if correct is not None and floor is None and is_baseline:
        criteria.append(Criterion(True, "GSM8K: scored; no floor set"))
    status, failed = combine(criteria)
    numbers = {
        "gsm8k_correct": correct,
        "gsm8k_questions": questions,
        "baseline_correct": baseline_correct,
        "floor": floor,
        "parity": parity,
        "match": match,
    }
    return GateResult("quality", status, failed, numbers, arm=arm)
