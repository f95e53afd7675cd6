"""The mechanism gate: an arm's declared serving mechanism checked against the registries.

The four rules:
1. a non-baseline mechanism and variant must be registered (only baseline/baseline needs no entry);
2. `quality_eval_status` is one of pending, completed, failed, not_required (and `support` one of
   supported, experimental, unsupported; a named `quality_eval` must be registered);
3. a `supported` arm with a lossy variant needs a completed, registered quality evaluation;
4. speculative decoding needs a `draft_model_id` and an acceptance rate in [0, 1].
Unregistered or malformed values fail the gate; a registry that failed to load fails it too.
"""

from __future__ import annotations

import math

from runners.evidence.mechanism_input import BASELINE, MechanismInput
from runners.gates.registry import Registry
from runners.gates.result import Criterion, GateResult, combine

QUALITY_EVAL_STATUSES = ("pending", "completed", "failed", "not_required")
SUPPORT_LEVELS = ("supported", "experimental", "unsupported")
SPECULATIVE = "speculative_decoding"
ACCEPTANCE_RULE = "speculative decoding needs an acceptance rate"


def _registered(m: MechanismInput, registry: Registry) -> list[Criterion]:
    if m.mechanism == BASELINE and m.variant == BASELINE:
        return [Criterion(True, "baseline")]
    entry = registry.mechanisms.get(m.mechanism)
    if entry is None:
        known = ", ".join(sorted(registry.mechanisms)) or "none"
        return [Criterion(False, f"mechanism {m.mechanism!r} is not registered (registered: {known})")]
    if m.variant not in entry.variants:
        known = ", ".join(sorted(entry.variants))
        return [Criterion(False, f"variant {m.variant!r} of {m.mechanism} is not registered (registered: {known})")]
    return [Criterion(True, f"{m.mechanism}/{m.variant} registered")]


def _values(m: MechanismInput, registry: Registry) -> list[Criterion]:
    out = [
        Criterion(
            m.quality_eval_status in QUALITY_EVAL_STATUSES,
            f"quality_eval_status {m.quality_eval_status!r} is not one of {', '.join(QUALITY_EVAL_STATUSES)}",
        ),
        Criterion(m.support in SUPPORT_LEVELS, f"support {m.support!r} is not one of {', '.join(SUPPORT_LEVELS)}"),
    ]
    if m.quality_eval is not None:
        known = ", ".join(sorted(registry.quality_evals)) or "none"
        out.append(
            Criterion(
                m.quality_eval in registry.quality_evals,
                f"quality_eval {m.quality_eval!r} is not registered (registered: {known})",
            )
        )
    return out


def _lossy_supported(m: MechanismInput, registry: Registry) -> list[Criterion]:
    entry = registry.mechanisms.get(m.mechanism)
    if m.support != "supported" or entry is None or not entry.is_lossy(m.variant):
        return []
    registered = m.quality_eval is not None and m.quality_eval in registry.quality_evals
    ok = registered and m.quality_eval_status == "completed"
    return [
        Criterion(
            ok,
            f"{m.mechanism}/{m.variant} is lossy and marked supported: it needs a completed, registered quality "
            f"evaluation (quality_eval = {m.quality_eval!r}, status {m.quality_eval_status!r})",
        )
    ]


def _speculative(m: MechanismInput) -> list[Criterion]:
    if m.mechanism != SPECULATIVE:
        return []
    rate = m.acceptance_rate
    rate_ok = rate is not None and math.isfinite(rate) and 0.0 <= rate <= 1.0
    return [
        Criterion(bool(m.draft_model_id and m.draft_model_id.strip()), "speculative decoding needs draft_model_id"),
        Criterion(
            rate_ok,
            f"{ACCEPTANCE_RULE} in [0, 1] "
            f"(measured from vllm:spec_decode_* metrics or declared as acceptance_rate; got {rate!r})",
        ),
    ]


def mechanism_gate(m: MechanismInput, registry: Registry) -> GateResult:
    """Judge one arm's mechanism fields by the four rules in the module docstring."""
    if registry.errors:
        failed = tuple(f"registry failed to load: {e}" for e in registry.errors)
        return GateResult("mechanism", "fail", failed, {"mechanism": m.mechanism, "variant": m.variant}, arm=m.arm)
    criteria = [*_registered(m, registry), *_values(m, registry), *_lossy_supported(m, registry), *_speculative(m)]
    status, failed = combine(criteria)
    entry = registry.mechanisms.get(m.mechanism)
    numbers = {
        "mechanism": m.mechanism,
        "variant": m.variant,
        "support": m.support,
        "lossy": entry.is_lossy(m.variant) if entry else None,
        "quality_eval": m.quality_eval,
        "quality_eval_status": m.quality_eval_status,
        "draft_model_id": m.draft_model_id,
        "acceptance_rate": m.acceptance_rate,
    }
    return GateResult("mechanism", status, failed, numbers, arm=m.arm)
