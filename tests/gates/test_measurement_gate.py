"""The measurement gate on hand-made results: a distorted deciding step withholds the arm's verdict (and a
distorted baseline every verdict), naming the step and both numbers; unchecked steps withhold nothing."""

from __future__ import annotations

from pathlib import Path

from runners.evidence.measurement import NOT_RECORDED, StepMeasurement, step_measurement
from runners.evidence.mechanism_input import MechanismInput
from runners.evidence.results import ArmResult, PhaseResult, RunResults
from runners.gates.candidate import KEEP_OPT_IN
from runners.gates.evaluate import NO_VERDICT, evaluate_gates
from runners.gates.measurement import measurement_gate
from runners.gates.registry import load_registry
from runners.plan.model import Plan
from runners.replay.measurement_check import AGREE, DISTORTED, UNCHECKED, Comparison, MeasurementCheck
from runners.replay.metrics import phase_stats

TTFT = Comparison("TTFT", 312.4, 5.1, 307.3, 25.0)
DISTORTION = MeasurementCheck(DISTORTED, (TTFT,), TTFT.describe())
AGREEMENT = MeasurementCheck(AGREE, (Comparison("TTFT", 12.0, 8.7, 3.3, 25.0),))
NO_METRICS = MeasurementCheck(UNCHECKED, reason="at the step's start: scraping http://x/metrics failed: HTTP 404")


def test_a_distorted_step_fails_the_gate_naming_the_step_and_both_numbers() -> None:
    gate = measurement_gate("fast", [StepMeasurement("fast/primary/replay/0", DISTORTION)])
    assert gate.status == "fail" and gate.verdict == NO_VERDICT and gate.arm == "fast"
    assert gate.failed_criteria == (
        "fast/primary/replay/0: client-side distortion: TTFT mean: client 312.4 ms vs server 5.1 ms "
        "(|Δ| 307.3 ms > bound 25.0 ms)",
    )
    assert gate.numbers["steps"]["fast/primary/replay/0"]["status"] == DISTORTED


def test_agree_passes_unchecked_has_no_data_and_withholds_nothing() -> None:
    assert measurement_gate("a", [StepMeasurement("a/primary/replay/0", AGREEMENT)]).status == "pass"
    gate = measurement_gate("a", [StepMeasurement("a/primary/replay/0", AGREEMENT),
                                  StepMeasurement("a/primary/replay/1", NO_METRICS)])  # fmt: skip
    assert gate.status == "no_data" and gate.verdict is None
    assert gate.failed_criteria == ("a/primary/replay/1: unchecked: " + (NO_METRICS.reason or ""),)
    assert measurement_gate("a", []).status == "no_data"


def test_a_distorted_baseline_fails_every_other_arm_too() -> None:
    base = [StepMeasurement("base/primary/replay/0", DISTORTION)]
    gate = measurement_gate("fast", [StepMeasurement("fast/primary/replay/0", AGREEMENT)], "base", base)
    assert gate.status == "fail" and gate.verdict == NO_VERDICT
    assert gate.failed_criteria[0].startswith("baseline base: base/primary/replay/0: client-side distortion: TTFT")


def test_an_old_phase_json_without_the_check_is_unchecked_and_says_why() -> None:
    assert step_measurement("a/primary/replay/0", {}).check == MeasurementCheck(UNCHECKED, reason=NOT_RECORDED)
    assert step_measurement("a/primary/replay/0", {"measurement": DISTORTION.as_dict()}).check == DISTORTION


PLAN = Plan.model_validate(
    {
        "name": "p",
        "serve": {"command": ["x", "{port}"]},
        "arms": [{"name": "base"}, {"name": "fast"}],
        "phases": [{"name": "replay", "kind": "sharegpt", "requests": 4}],
    }
)


def results(base: MeasurementCheck, fast: MeasurementCheck) -> RunResults:
    def arm(name: str, wall: float, check: MeasurementCheck) -> ArmResult:
        stats = phase_stats([], wall)
        phase = PhaseResult("replay", "sharegpt", "primary", 1, 1, (wall,), stats,
                            measurements=(StepMeasurement(f"{name}/primary/replay/0", check),))  # fmt: skip
        return ArmResult(name, {}, MechanismInput(arm=name), "verified", {}, {"replay": phase}, stats)

    arms = (arm("base", 10.0, base), arm("fast", 12.0, fast))
    return RunResults("r", PLAN, "finished", Path("/nonexistent"), arms, (), {})


def test_evaluate_withholds_the_verdict_of_a_distorted_arm() -> None:
    registry = load_registry()
    clean = evaluate_gates(results(AGREEMENT, AGREEMENT), registry)
    assert clean.verdicts == {"base": "baseline", "fast": KEEP_OPT_IN}  # 20 % slower: the control case
    distorted = evaluate_gates(results(AGREEMENT, DISTORTION), registry)
    assert distorted.verdicts == {"base": "baseline", "fast": NO_VERDICT}
    gate = next(g for g in distorted.gates if g.name == "measurement" and g.arm == "fast")
    reason = gate.failed_criteria[0]
    assert "fast/primary/replay/0" in reason and "client 312.4 ms vs server 5.1 ms" in reason
    assert evaluate_gates(results(DISTORTION, AGREEMENT), registry).verdicts == {"base": NO_VERDICT, "fast": NO_VERDICT}
    unchecked = evaluate_gates(results(NO_METRICS, NO_METRICS), registry)
    assert unchecked.verdicts == {"base": "baseline", "fast": KEEP_OPT_IN}
