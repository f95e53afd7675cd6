"""Steps (arm, mode, phase, rep), the unit of work with its own DONE marker, and serve sessions."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from runners.plan.sections import ArmSpec

MODES = ("primary", "supplementary")

# What a serve session keeps beside its steps, in `arms/<arm>/<mode>/`: a phase may not be named like one of them.
SERVE_LOG = "serve.log"
CONTAINER_RECORD = "container.json"
PLUGIN_DIR = "plugin"
PROFILE_DIR_NAME = "@profile"  # the target's trace directory (no phase name can start with '@')
SERVE_DIR_ENTRIES = (SERVE_LOG, CONTAINER_RECORD, PLUGIN_DIR, PROFILE_DIR_NAME)


@dataclass(frozen=True, order=True)
class StepKey:
    """One unit of work with its own DONE marker: an arm, a mode, a phase and a repetition."""

    arm: str
    mode: str
    phase: str
    rep: int

    @property
    def path(self) -> str:
        """`arm/mode/phase/rep`, the step's relative directory."""
        return f"{self.arm}/{self.mode}/{self.phase}/{self.rep}"

    def as_dict(self) -> dict:
        """JSON form used in events."""
        return {"arm": self.arm, "mode": self.mode, "phase": self.phase, "rep": self.rep}

    @classmethod
    def from_dict(cls, d: dict) -> StepKey:
        """Inverse of as_dict."""
        return cls(str(d["arm"]), str(d["mode"]), str(d["phase"]), int(d["rep"]))


@dataclass(frozen=True)
class Session:
    """Consecutive steps of one arm in one mode: the serve target is started once for them."""

    arm: ArmSpec
    mode: str
    steps: tuple[StepKey, ...]
