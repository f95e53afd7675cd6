"""GateResult: what every gate returns, and the one rule for combining criteria."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Literal

GateStatus = Literal["pass", "fail", "no_data"]
Severity = Literal["blocking", "warning"]
STATUSES: tuple[GateStatus, ...] = ("pass", "fail", "no_data")
STATUS_LABEL: dict[str, str] = {"pass": "pass", "fail": "FAIL", "no_data": "no data"}  # how people read a status
NO_VERDICT = "no verdict"


@dataclass(frozen=True)
class Criterion:
    """One judged condition: `ok` True/False, or None when the numbers to judge it are missing."""

    ok: bool | None
    text: str


@dataclass(frozen=True)
class GateResult:
    """A gate's verdict on one arm (or on the run when `arm` is None).

    `failed_criteria` say in words what failed or could not be judged; `numbers` hold the values
    behind the verdict; `verdict` is the gate's own word where it has one (e.g. "keep opt-in");
    a `warning` gate never blocks a verdict.
    """

    name: str
    status: GateStatus
    failed_criteria: tuple[str, ...] = ()
    numbers: dict[str, Any] = field(default_factory=dict)
    arm: str | None = None
    verdict: str | None = None
    severity: Severity = "blocking"

    def as_dict(self) -> dict:
        """JSON form."""
        out = asdict(self)
        out["failed_criteria"] = list(self.failed_criteria)
        return out

    @classmethod
    def from_dict(cls, d: dict) -> GateResult:
        """Inverse of as_dict."""
        status = d.get("status")
        return cls(
            name=str(d.get("name", "?")),
            status=status if status in STATUSES else "no_data",
            failed_criteria=tuple(str(c) for c in d.get("failed_criteria") or ()),
            numbers=dict(d.get("numbers") or {}),
            arm=d.get("arm"),
            verdict=d.get("verdict"),
            severity="warning" if d.get("severity") == "warning" else "blocking",
        )


def combine(criteria: list[Criterion]) -> tuple[GateStatus, tuple[str, ...]]:
    """Any failed criterion fails the gate; else any unjudged one makes it no_data; else it passes.

    The texts returned are those of the failed criteria, or (for no_data) of the unjudged ones.
    """
    failed = tuple(c.text for c in criteria if c.ok is False)
    if failed:
        return "fail", failed
    missing = tuple(c.text for c in criteria if c.ok is None)
    if missing or not criteria:
        return "no_data", missing or ("nothing to judge",)
    return "pass", ()


def pct_change(new: float, old: float) -> float | None:
    """(new - old) / old in percent; None when old is 0."""
    return (new - old) / old * 100.0 if old else None
