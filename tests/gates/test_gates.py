"""Gates on hand-made result sets: every verdict, ties, missing data, and the registry rules matrix."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest

from runners.evidence.kernel_checks import KernelCheck
from runners.evidence.mechanism_input import MechanismInput
from runners.gates.candidate import (
    DEFAULT_CANDIDATE,
    KEEP_OPT_IN,
    REJECT,
    CandidateInput,
    CandidateRules,
    candidate_verdicts,
)
from runners.gates.coherence import coherence_gate
from runners.gates.correctness import correctness_gate
from runners.gates.mechanism import mechanism_gate
from runners.gates.quality import quality_gate
from runners.gates.registry import DEFAULT_REGISTRY_DIR, load_registry
from runners.gates.reproduction import DIVERGES, REPRODUCES, ReproInput, reproduction_gate
from runners.gates.result import Criterion, GateResult, combine

REGISTRY = load_registry()


def test_the_shipped_registries_load_and_hold_what_the_issue_lists() -> None:
    assert REGISTRY.errors == ()
    assert set(REGISTRY.mechanisms) == {
        "baseline", "kv_quantization", "kv_compression", "compressed_attention", "speculative_decoding"
    }  # fmt: skip
    assert set(REGISTRY.mechanisms["kv_quantization"].variants) == {"fp8_e4m3", "turboquant_class"}
    assert set(REGISTRY.mechanisms["speculative_decoding"].variants) == {"mtp", "eagle3", "medusa", "dflash"}
    assert set(REGISTRY.quality_evals) == {"ruler_v1", "longbench_v2", "humaneval", "math_500", "gsm8k"}
    assert REGISTRY.mechanisms["kv_compression"].is_lossy("kvtc_class")
    assert not REGISTRY.mechanisms["speculative_decoding"].is_lossy("eagle3")


def test_combine_fail_beats_no_data_beats_pass() -> None:
    assert combine([Criterion(True, "a"), Criterion(None, "b"), Criterion(False, "c")]) == ("fail", ("c",))
    assert combine([Criterion(True, "a"), Criterion(None, "b")]) == ("no_data", ("b",))
    assert combine([Criterion(True, "a")]) == ("pass", ())
    assert combine([])[0] == "no_data"


# --- quality ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("correct", "base", "floor", "status", "text"),
    [
        (31, 32, 30, "pass", None),
        (29, 30, 30, "fail", "GSM8K floor"),
        (30, 33, 30, "fail", "GSM8K parity"),  # trails by 3 > 2
        (31, 33, 30, "pass", None),  # trails by exactly 2
        (40, 30, None, "pass", None),  # above the baseline never fails parity
        (None, 30, 30, "no_data", "no score"),
        (31, None, None, "no_data", "baseline arm has no score"),
        (20, None, 30, "fail", "GSM8K floor"),  # a failed floor is definitive even without a baseline
    ],
)
def test_quality_floor_and_parity(correct, base, floor, status, text) -> None:
    g = quality_gate("arm", correct, 50, base, is_baseline=False, floor=floor, parity=2)
    assert g.status == status
    if text:
        assert any(text in c for c in g.failed_criteria)
    assert g.numbers["gsm8k_correct"] == correct and g.arm == "arm"


def test_quality_of_the_baseline_arm_is_its_floor_only() -> None:
    assert quality_gate("b", 35, 50, 35, is_baseline=True, floor=30, parity=2).status == "pass"
    assert quality_gate("b", 25, 50, 25, is_baseline=True, floor=30, parity=2).status == "fail"
    assert quality_gate("b", 25, 50, 25, is_baseline=True, floor=None, parity=2).status == "pass"


# --- default candidate ------------------------------------------------------------------------------

BASE = CandidateInput("base", wall_mean_s=100.0, tpot_p95_ms=10.0, gsm8k_correct=30)


def verdict_of(arm: CandidateInput, rules: CandidateRules | None = None) -> GateResult:
    (result,) = candidate_verdicts(BASE, [arm], rules or CandidateRules())
    return result


def test_faster_with_no_quality_loss_and_no_worse_tpot_is_the_default_candidate() -> None:
    g = verdict_of(CandidateInput("a", 94.0, 9.9, 29))
    assert (g.status, g.verdict, g.failed_criteria) == ("pass", DEFAULT_CANDIDATE, ())
    assert g.numbers["wall_improvement_pct"] == pytest.approx(6.0)
    assert g.numbers["tpot_p95_change_pct"] == pytest.approx(-1.0)


def test_exactly_five_percent_faster_qualifies_and_just_under_does_not() -> None:
    assert verdict_of(CandidateInput("a", 95.0, 10.0, 30)).verdict == DEFAULT_CANDIDATE
    g = verdict_of(CandidateInput("a", 95.1, 10.0, 30))
    assert g.verdict == KEEP_OPT_IN and "needs >= 5% faster" in g.failed_criteria[0]


def test_worse_tpot_p95_keeps_it_opt_in_unless_within_the_tolerance() -> None:
    slower_tail = CandidateInput("a", 90.0, 10.3, 30)
    g = verdict_of(slower_tail)
    assert g.verdict == KEEP_OPT_IN and "TPOT p95" in g.failed_criteria[0]
    assert verdict_of(slower_tail, CandidateRules(tpot_p95_tolerance_pct=5.0)).verdict == DEFAULT_CANDIDATE


def test_a_slower_arm_is_kept_opt_in_and_says_slower() -> None:
    g = verdict_of(CandidateInput("a", 120.0, 12.0, 30))
    assert g.verdict == KEEP_OPT_IN and len(g.failed_criteria) == 2
    assert "20.00% slower" in g.failed_criteria[0]


def test_a_pause_with_requests_in_flight_judges_the_wall_at_both_ends_of_its_range() -> None:
    """A pause's drain stays in the wall mean: unpaused, it could have been up to `wall_uncertain_s` shorter."""
    # 90 s, up to 2 s shorter: 10% to 12% faster, >= 5% either way: the verdict stands, and says why
    g = verdict_of(CandidateInput("a", 90.0, 9.9, 30, wall_uncertain_s=2.0))
    assert g.verdict == DEFAULT_CANDIDATE and g.numbers["wall_improvement_range_pct"] == pytest.approx([10.0, 12.0])
    # 97 s, up to 4 s shorter: 3% to 7% faster, across the 5% needed: no verdict on wall time, and no verdict
    g = verdict_of(CandidateInput("a", 97.0, 9.9, 30, wall_uncertain_s=4.0))
    assert (g.status, g.verdict) == ("no_data", None)
    assert "between +3.00% and +7.00%, on both sides of the 5% needed" in g.failed_criteria[0]
    assert "measure the step again without pausing" in g.failed_criteria[0]
    # 120 s, up to 4 s shorter: 16% to 20% slower: kept opt-in either way
    g = verdict_of(CandidateInput("a", 120.0, 9.9, 30, wall_uncertain_s=4.0))
    assert g.verdict == KEEP_OPT_IN and "needs >= 5% faster either way" in g.failed_criteria[0]


def test_a_paused_baseline_cannot_flatter_the_other_arm() -> None:
    """The baseline's wall could have been shorter too: the arm is judged against the shortest it could have been."""
    paused_base = CandidateInput("base", wall_mean_s=100.0, tpot_p95_ms=10.0, gsm8k_correct=30, wall_uncertain_s=6.0)
    (g,) = candidate_verdicts(paused_base, [CandidateInput("a", 93.0, 9.9, 30)])
    # 7% faster than 100 s, but only 1.06% faster than 94 s: not judged
    assert g.verdict is None and "between +1.06% and +7.00%" in g.failed_criteria[0]
    assert g.numbers["baseline_wall_uncertain_s"] == 6.0
    (g,) = candidate_verdicts(paused_base, [CandidateInput("a", 85.0, 9.9, 30)])  # faster than 94 s too
    assert g.verdict == DEFAULT_CANDIDATE
    (g,) = candidate_verdicts(replace(paused_base, wall_uncertain_s=100.0), [CandidateInput("a", 85.0, 9.9, 30)])
    assert g.verdict is None and "the change cannot be bounded" in g.failed_criteria[0]


def test_gsm8k_regression_or_a_failed_quality_or_correctness_gate_rejects() -> None:
    g = verdict_of(CandidateInput("a", 80.0, 8.0, 27))  # much faster, but 3 questions worse
    assert (g.status, g.verdict) == ("fail", REJECT) and "GSM8K" in g.failed_criteria[0]
    assert verdict_of(CandidateInput("a", 80.0, 8.0, 28)).verdict == DEFAULT_CANDIDATE  # 2 worse: parity holds
    g = verdict_of(CandidateInput("a", 80.0, 8.0, 30, quality_ok=False))
    assert g.verdict == REJECT and g.failed_criteria == ("quality gate failed",)
    g = verdict_of(CandidateInput("a", 80.0, 8.0, 30, correct_kernels=False))
    assert g.verdict == REJECT and g.failed_criteria == ("kernel correctness gate failed",)


def test_failed_requests_or_a_failed_mechanism_gate_keep_a_faster_arm_opt_in() -> None:
    g = verdict_of(CandidateInput("a", 80.0, 8.0, 30, failed_requests=3))
    assert g.verdict == KEEP_OPT_IN and "3 request(s) failed" in g.failed_criteria[0]
    g = verdict_of(CandidateInput("a", 80.0, 8.0, 30, mechanism_ok=False))
    assert g.verdict == KEEP_OPT_IN and g.failed_criteria == (
        "mechanism gate failed: the arm's declared mechanism is not acceptable",
    )
    assert verdict_of(CandidateInput("a", 80.0, 8.0, 30, mechanism_ok=None)).verdict == DEFAULT_CANDIDATE


@pytest.mark.parametrize(
    ("arm", "missing"),
    [
        (CandidateInput("a", None, 9.0, 30), "wall time"),
        (CandidateInput("a", 90.0, None, 30), "TPOT p95"),
        (CandidateInput("a", 90.0, 9.0, None), "GSM8K"),
    ],
)
def test_missing_numbers_give_no_data_and_no_verdict(arm: CandidateInput, missing: str) -> None:
    g = verdict_of(arm)
    assert (g.status, g.verdict) == ("no_data", None)
    assert any(missing in c for c in g.failed_criteria)


def test_a_baseline_without_numbers_gives_no_data_for_everyone() -> None:
    empty = CandidateInput("base", None, None, None)
    results = candidate_verdicts(empty, [CandidateInput("a", 90.0, 9.0, 30), CandidateInput("b", 80.0, 8.0, 30)])
    assert [r.status for r in results] == ["no_data", "no_data"]


def test_a_definite_failure_is_reported_even_when_other_numbers_are_missing() -> None:
    g = verdict_of(CandidateInput("a", 130.0, 9.0, None))  # slower: no GSM8K score needed to say so
    assert (g.status, g.verdict) == ("fail", KEEP_OPT_IN)


def test_several_candidates_the_lowest_tpot_p95_wins_and_the_others_stay_opt_in() -> None:
    arms = [CandidateInput("a", 90.0, 9.5, 30), CandidateInput("b", 92.0, 9.0, 30), CandidateInput("c", 80.0, 9.8, 30)]
    results = {r.arm: r for r in candidate_verdicts(BASE, arms)}
    assert results["b"].verdict == DEFAULT_CANDIDATE
    for loser in ("a", "c"):
        assert results[loser].verdict == KEEP_OPT_IN
        assert "b has the lower TPOT p95" in results[loser].failed_criteria[0]
        assert results[loser].numbers["preferred"] == "b"


def test_an_exact_tpot_tie_goes_to_the_lower_wall_time_then_plan_order() -> None:
    arms = [CandidateInput("a", 90.0, 9.0, 30), CandidateInput("b", 85.0, 9.0, 30)]
    results = {r.arm: r for r in candidate_verdicts(BASE, arms)}
    assert results["b"].verdict == DEFAULT_CANDIDATE and "ties b on TPOT p95" in results["a"].failed_criteria[0]
    arms = [CandidateInput("a", 90.0, 9.0, 30), CandidateInput("b", 90.0, 9.0, 30)]
    results = {r.arm: r for r in candidate_verdicts(BASE, arms)}
    assert results["a"].verdict == DEFAULT_CANDIDATE and results["b"].verdict == KEEP_OPT_IN


# --- reproduction -----------------------------------------------------------------------------------


def test_reproduction_within_two_percent_and_two_questions_reproduces() -> None:
    prior = [ReproInput("x", {"wo_gemv": 100.0, "attn": 50.0}, 10.0, 30, 60.0)]
    current = [ReproInput("x", {"wo_gemv": 101.9, "attn": 49.1}, 10.15, 32, 70.0)]  # wall is informational
    gate, rows = reproduction_gate(prior, current)
    assert (gate.status, gate.verdict) == ("pass", REPRODUCES)
    by_metric = {r.metric: r for r in rows}
    assert by_metric["kernel wo_gemv"].delta == pytest.approx(1.9)
    assert by_metric["GSM8K correct"].delta == 2 and by_metric["wall mean"].within is None
    assert gate.numbers["judged"] == 4


@pytest.mark.parametrize(
    ("current", "culprit"),
    [
        (ReproInput("x", {"wo_gemv": 102.5}, 10.0, 30), "kernel wo_gemv +2.50%"),
        (ReproInput("x", {"wo_gemv": 100.0}, 9.7, 30), "ms/token -3.00%"),
        (ReproInput("x", {"wo_gemv": 100.0}, 10.0, 27), "GSM8K correct -3 questions"),
    ],
)
def test_reproduction_diverges_naming_the_number(current: ReproInput, culprit: str) -> None:
    gate, _ = reproduction_gate([ReproInput("x", {"wo_gemv": 100.0}, 10.0, 30)], [current])
    assert (gate.status, gate.verdict) == ("fail", DIVERGES)
    assert any(culprit in c for c in gate.failed_criteria), gate.failed_criteria


def test_reproduction_with_nothing_in_common_is_no_data_and_lists_arms_on_one_side() -> None:
    gate, rows = reproduction_gate([ReproInput("x", ms_per_token=10.0)], [ReproInput("y", ms_per_token=10.0)])
    assert (gate.status, gate.verdict) == ("no_data", None) and rows == []
    assert gate.numbers["arms_only_in_prior"] == ["x"] and gate.numbers["arms_only_in_current"] == ["y"]
    gate, rows = reproduction_gate([ReproInput("x")], [ReproInput("x")])
    assert gate.status == "no_data" and all(r.within is None for r in rows)


def test_a_number_seen_in_one_run_only_or_a_missing_arm_leaves_the_verdict_open() -> None:
    gate, rows = reproduction_gate([ReproInput("x", {"a": 1.0, "old": 5.0}, 10.0)], [ReproInput("x", {"a": 1.0}, 10.0)])
    assert (gate.status, gate.verdict) == ("no_data", None)  # a lost trace must not read as reproduced
    assert gate.failed_criteria == ("x: kernel old measured in the prior run only",)
    old = next(r for r in rows if r.metric == "kernel old")
    assert old.current is None and old.within is None
    gate, _ = reproduction_gate([ReproInput("x", ms_per_token=10.0), ReproInput("y", ms_per_token=10.0)],
                                [ReproInput("x", ms_per_token=10.1)])  # fmt: skip
    assert gate.status == "no_data" and gate.failed_criteria == ("arm y of the prior run is missing from this run",)
    gate, _ = reproduction_gate([ReproInput("x", {"old": 5.0}, 10.0)], [ReproInput("x", {}, 11.0)])
    assert gate.status == "fail"  # a divergence is definite even with other numbers missing


# --- kernel correctness and coherence ---------------------------------------------------------------


def test_kernel_correctness() -> None:
    ok = KernelCheck("wo[8]", "bit-exact", True, 0.0, 0.0)
    bad = KernelCheck("wo[8]", "tolerance", False, 0.5, 1e-4, "vs float64 matmul")
    assert correctness_gate("a", [ok]).status == "pass"
    g = correctness_gate("a", [ok, bad])
    assert g.status == "fail"
    assert g.failed_criteria == ("wo[8] tolerance: max |diff| 0.5, allowed 0.0001; vs float64 matmul",)
    assert correctness_gate("a", None).status == "no_data" and correctness_gate("a", []).status == "no_data"


def test_coherence_is_a_warning_only() -> None:
    assert coherence_gate("a", 4, 0).status == "pass"
    g = coherence_gate("a", 4, 1)
    assert (g.status, g.severity) == ("fail", "warning") and "1 of 4" in g.failed_criteria[0]
    assert coherence_gate("a", 0, 0).status == "no_data"


# --- mechanism registry rules ----------------------------------------------------------------------

SUPPORTED_LOSSY_DONE = dict(mechanism="kv_quantization", variant="fp8_e4m3", support="supported",
                            quality_eval="ruler_v1", quality_eval_status="completed")  # fmt: skip


@pytest.mark.parametrize(
    ("fields", "status", "text"),
    [
        ({}, "pass", None),  # baseline/baseline
        ({"mechanism": "kv_quantization", "variant": "fp8_e4m3"}, "pass", None),  # experimental: no eval needed
        ({"mechanism": "kv_quantization", "variant": "int3"}, "fail", "variant 'int3' of kv_quantization"),
        ({"mechanism": "sparsity", "variant": "x"}, "fail", "mechanism 'sparsity' is not registered"),
        ({"mechanism": "speculative_decoding", "draft_model_id": "m", "acceptance_rate": 0.5}, "fail",
         "variant 'baseline' of speculative_decoding"),  # only baseline/baseline needs no registry entry
        ({"quality_eval_status": "done"}, "fail", "quality_eval_status 'done'"),
        ({"support": "maybe"}, "fail", "support 'maybe'"),
        ({"quality_eval": "mmlu"}, "fail", "quality_eval 'mmlu' is not registered"),
        (SUPPORTED_LOSSY_DONE, "pass", None),
        ({**SUPPORTED_LOSSY_DONE, "quality_eval_status": "pending"}, "fail", "lossy and marked supported"),
        ({**SUPPORTED_LOSSY_DONE, "quality_eval_status": "failed"}, "fail", "lossy and marked supported"),
        ({**SUPPORTED_LOSSY_DONE, "quality_eval": None}, "fail", "lossy and marked supported"),
        ({**SUPPORTED_LOSSY_DONE, "quality_eval": "mmlu"}, "fail", "lossy and marked supported"),
        ({"mechanism": "compressed_attention", "variant": "triattention_class", "support": "supported"}, "fail",
         "lossy and marked supported"),
        ({"mechanism": "speculative_decoding", "variant": "eagle3", "support": "supported",
          "draft_model_id": "eagle3-head", "acceptance_rate": 0.7}, "pass", None),  # lossless: no eval needed
        ({"mechanism": "speculative_decoding", "variant": "eagle3", "acceptance_rate": 0.7}, "fail",
         "needs draft_model_id"),
        ({"mechanism": "speculative_decoding", "variant": "mtp", "draft_model_id": "self"}, "fail",
         "needs an acceptance rate"),
        ({"mechanism": "speculative_decoding", "variant": "mtp", "draft_model_id": "  ", "acceptance_rate": 1.5},
         "fail", "needs draft_model_id"),
    ],
)  # fmt: skip
def test_mechanism_rules_matrix(fields: dict, status: str, text: str | None) -> None:
    g = mechanism_gate(MechanismInput("arm", **fields), REGISTRY)
    assert g.status == status, g.failed_criteria
    if text:
        assert any(text in c for c in g.failed_criteria), g.failed_criteria


def test_an_out_of_range_acceptance_rate_fails() -> None:
    g = mechanism_gate(MechanismInput("a", "speculative_decoding", "mtp", draft_model_id="m", acceptance_rate=1.5),
                       REGISTRY)  # fmt: skip
    assert g.status == "fail" and "acceptance rate in [0, 1]" in g.failed_criteria[0]


@pytest.mark.parametrize(
    ("mechanisms", "problem"),
    [
        (None, "missing"),
        ("{not json", "mechanisms.json"),
        ('{"schema": 1, "mechanisms": {"x": {"variants": {}}}}', "mechanisms.x.variants"),
        ('{"schema": 1, "mechanisms": {"x": {"variants": {"v": {}}, "colour": "red"}}}', "colour"),
    ],
)
def test_a_registry_that_fails_to_load_is_reported_and_fails_the_gate(tmp_path: Path, mechanisms, problem) -> None:
    (tmp_path / "quality_evals.json").write_text((DEFAULT_REGISTRY_DIR / "quality_evals.json").read_text())
    if mechanisms is not None:
        (tmp_path / "mechanisms.json").write_text(mechanisms)
    registry = load_registry(tmp_path)
    assert len(registry.errors) == 1 and problem in registry.errors[0] and str(tmp_path) in registry.errors[0]
    g = mechanism_gate(MechanismInput("a"), registry)  # even a baseline arm: the registry must be sound
    assert g.status == "fail" and g.failed_criteria[0].startswith("registry failed to load")


def test_gate_results_round_trip_through_json() -> None:
    g = verdict_of(CandidateInput("a", 94.0, 9.9, 29))
    assert GateResult.from_dict(json.loads(json.dumps(g.as_dict()))) == g
    assert GateResult.from_dict({"name": "x", "status": "weird"}).status == "no_data"
