"""The env gate: did the arm's kernels run with the arm's env, as a process of the target reported?

An arm whose env is unverified (no gb10-vllm-plugin report from an EngineCore or worker, no
/debug/config) or mismatched gets no verdict: its numbers may be the default kernel's. When the
baseline's env is not verified, every other arm's comparison is not judged either.
"""

from __future__ import annotations

from runners.gates.result import NO_VERDICT, Criterion, GateResult, combine

GATE = "env"


def _criterion(who: str, status: str, where: str | None, reason: str) -> Criterion:
    if status == "verified":
        return Criterion(True, f"{who}: env verified" + (f" by {where}" if where else f" ({reason})" if reason else ""))
    if status == "mismatch":
        return Criterion(False, f"{who}: the target ran another env: {reason}")
    if status == "not started":
        return Criterion(None, f"{who}: no target was started")
    return Criterion(False, f"{who}: env unverified: {reason or 'the target reported nothing'}")


def env_gate(arm: str, status: str, where: str | None = None, reason: str = "", baseline: str | None = None,
             baseline_status: str | None = None, baseline_reason: str = "") -> GateResult:  # fmt: skip
    """Pass when the arm's env (and, for a non-baseline arm, the baseline's) was verified; else no verdict."""
    criteria = [_criterion(f"arm {arm}", status, where, reason)]
    if baseline is not None and baseline_status not in (None, "verified", "not started"):
        text = _criterion(f"baseline {baseline}", baseline_status or "", None, baseline_reason).text
        criteria.append(Criterion(False, f"{text}; the comparison with the baseline is not judged"))
    gate_status, failed = combine(criteria)
    numbers = {"status": status, "where": where}
    return GateResult(GATE, gate_status, failed, numbers, arm=arm,
                      verdict=NO_VERDICT if gate_status == "fail" else None)  # fmt: skip
