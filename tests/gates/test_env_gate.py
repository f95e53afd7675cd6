"""The env gate: an arm whose env no process of the target proved gets no verdict, nor do arms judged against
such a baseline."""

from __future__ import annotations

from runners.gates.env import env_gate
from runners.gates.result import NO_VERDICT


def test_a_verified_arm_passes_and_names_where() -> None:
    gate = env_gate("a", "verified", "EngineCore pid 7 (vLLM 0.32.0)", baseline="base", baseline_status="verified")
    assert gate.status == "pass" and gate.verdict is None and gate.numbers["where"].startswith("EngineCore")


def test_unverified_or_mismatched_arms_get_no_verdict() -> None:
    unverified = env_gate("a", "unverified", reason="no vLLM process reported its env")
    assert unverified.status == "fail" and unverified.verdict == NO_VERDICT
    assert unverified.failed_criteria == ("arm a: env unverified: no vLLM process reported its env",)
    mismatch = env_gate("a", "mismatch", reason="K: want '8', the process runs '1'")
    assert mismatch.status == "fail" and "another env" in mismatch.failed_criteria[0]


def test_an_unverified_baseline_withholds_the_comparison() -> None:
    gate = env_gate("a", "verified", "EngineCore pid 7", baseline="base", baseline_status="unverified",
                    baseline_reason="only api_server pid 3 reported")  # fmt: skip
    assert gate.status == "fail" and gate.verdict == NO_VERDICT
    assert "baseline base: env unverified: only api_server pid 3 reported" in gate.failed_criteria[0]


def test_an_arm_never_started_has_no_data_not_a_failure() -> None:
    assert env_gate("a", "not started").status == "no_data"
