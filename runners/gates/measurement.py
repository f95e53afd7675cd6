"""The measurement gate: were an arm's deciding steps measured as the server saw them?

Each done step of the deciding phases (wall time and TPOT) carries a client/server cross-check
(runners/replay/measurement_check.py). A step with a client-side distortion fails the gate with the
step and both numbers, and the arm gets no verdict: its timings are not what the server did. When
the baseline's deciding step is distorted, every other arm's gate fails too, since its verdict
compares against those timings. An `unchecked` step leaves the gate without data (it is listed
among the known limitations) and withholds nothing.
"""

from __future__ import annotations

from collections.abc import Sequence

from runners.evidence.measurement import StepMeasurement
from runners.gates.result import NO_VERDICT, Criterion, GateResult, combine
from runners.replay.measurement_check import DISTORTED, UNCHECKED

GATE = "measurement"


def _criterion(m: StepMeasurement) -> Criterion:
    if m.check.status == DISTORTED:
        return Criterion(False, f"{m.step}: client-side distortion: {m.check.reason}")
    if m.check.status == UNCHECKED:
        return Criterion(None, f"{m.step}: unchecked: {m.check.reason}")
    return Criterion(True, f"{m.step}: client and server agree")


def measurement_gate(
    arm: str,
    steps: Sequence[StepMeasurement],
    baseline: str | None = None,
    baseline_steps: Sequence[StepMeasurement] = (),
) -> GateResult:
    """The gate for `arm` over its deciding steps (and, for a non-baseline arm, the baseline's); see above."""
    criteria = [_criterion(m) for m in steps]
    if not steps:
        criteria.append(Criterion(None, "no done step of the deciding phases to cross-check"))
    for m in baseline_steps:
        if m.check.status == DISTORTED:
            criteria.append(
                Criterion(False, f"baseline {baseline}: {m.step}: client-side distortion: {m.check.reason}; "
                                 "the comparison with the baseline is not judged")
            )  # fmt: skip
    status, failed = combine(criteria)
    numbers = {"steps": {m.step: m.check.as_dict() for m in steps}}
    return GateResult(GATE, status, failed, numbers, arm=arm, verdict=NO_VERDICT if status == "fail" else None)
