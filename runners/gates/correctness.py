"""Kernel correctness: the serve target's own checks (bit-exact or within tolerance), where it reports them."""

from __future__ import annotations

from collections.abc import Sequence

from engine.units import NOT_MEASURED
from runners.evidence.kernel_checks import KernelCheck
from runners.gates.result import Criterion, GateResult, combine


def _text(c: KernelCheck) -> str:
    bound = "0 (bit-exact)" if c.check == "bit-exact" else f"{c.tolerance:g}" if c.tolerance is not None else "?"
    got = NOT_MEASURED if c.max_abs is None else f"{c.max_abs:.3g}"
    extra = f"; {c.detail}" if c.detail else ""
    return f"{c.kernel} {c.check}: max |diff| {got}, allowed {bound}{extra}"


def correctness_gate(arm: str, checks: Sequence[KernelCheck] | None) -> GateResult:
    """Pass when every reported check passed; no_data when the target reported none."""
    if not checks:
        return GateResult(
            "kernel-correctness", "no_data", ("the serve target reported no kernel checks",), {"checks": 0}, arm=arm
        )
    status, failed = combine([Criterion(c.passed, _text(c)) for c in checks])
    numbers = {"checks": len(checks), "passed": sum(c.passed for c in checks)}
    return GateResult("kernel-correctness", status, failed, numbers, arm=arm)
