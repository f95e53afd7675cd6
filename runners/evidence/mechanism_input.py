"""An arm's declared serving mechanism fields, as the mechanism gate and the reports read them."""

from __future__ import annotations

from dataclasses import dataclass

from runners.plan.sections import ArmSpec

BASELINE = "baseline"


@dataclass(frozen=True)
class MechanismInput:
    """An arm's declared mechanism fields (and the acceptance rate it measured or declared)."""

    arm: str
    mechanism: str = BASELINE
    variant: str = BASELINE
    support: str = "experimental"
    quality_eval: str | None = None
    quality_eval_status: str = "not_required"
    draft_model_id: str | None = None
    acceptance_rate: float | None = None

    @classmethod
    def declared_by(cls, arm: ArmSpec) -> MechanismInput:
        """The mechanism fields a plan's arm declares (its acceptance rate as declared, not measured)."""
        return cls(arm.name, arm.mechanism, arm.variant, arm.support, arm.quality_eval, arm.quality_eval_status,
                   arm.draft_model_id, arm.acceptance_rate)  # fmt: skip
