"""Coherence of long decodes: a warning, never a blocker (the check is a heuristic)."""

from __future__ import annotations

from runners.gates.result import GateResult


def coherence_gate(arm: str, checked: int, warned: int) -> GateResult:
    """Warn when any checked long decode looked incoherent; no_data when none was checked."""
    numbers = {"checked": checked, "with_warnings": warned}
    if checked <= 0:
        return GateResult("coherence", "no_data", ("no long decode was checked",), numbers, arm=arm, severity="warning")
    if warned:
        text = f"{warned} of {checked} long decodes have coherence warnings (coherence.jsonl)"
        return GateResult("coherence", "fail", (text,), numbers, arm=arm, severity="warning")
    return GateResult("coherence", "pass", (), numbers, arm=arm, severity="warning")
