"""A step's client/server cross-check (phase.json `measurement`), read back tolerant of damage."""

from __future__ import annotations

from dataclasses import dataclass

from runners.replay.measurement_check import UNCHECKED, MeasurementCheck

NOT_RECORDED = "phase.json records no client/server latency cross-check (written before it existed, or damaged)"


@dataclass(frozen=True)
class StepMeasurement:
    """One done step's cross-check: `step` is its path (arm/mode/phase/rep)."""

    step: str
    check: MeasurementCheck


def step_measurement(step: str, record: dict) -> StepMeasurement:
    """The step's check from its phase.json record; `unchecked` (saying so) when it is absent or damaged."""
    check = MeasurementCheck.from_dict(record.get("measurement"))
    return StepMeasurement(step, check if check is not None else MeasurementCheck(UNCHECKED, reason=NOT_RECORDED))
