"""A step's results line in the summary: KV usage at its real precision, server numbers that were not sampled,
prefix-cache and speculative-decoding rates, and prompts dropped for length."""

from __future__ import annotations

from engine.units import percent_text
from runners.report.summary import results_line


def test_percent_keeps_three_significant_digits() -> None:
    assert percent_text(0.0029) == "0.29 %"
    assert percent_text(0.0) == "0 %"
    assert percent_text(0.5) == "50 %"
    assert percent_text(1.0) == "100 %"
    assert percent_text(0.12345) == "12.3 %"
    assert percent_text(None) == "N/A"


def test_server_numbers_say_not_sampled_instead_of_zero_and_show_the_rates() -> None:
    reason = "not sampled: 2 ok /metrics scrape(s) in the step, at least 3 needed"
    short = {"server_metrics": {
        "num_requests_running_max": None, "num_requests_waiting_max": None, "kv_cache_usage_perc_max": None,
        "not_sampled": {"num_requests_running": reason, "num_requests_waiting": reason, "kv_cache_usage_perc": reason},
    }}  # fmt: skip
    assert results_line(short) == "server: running max not sampled, waiting max not sampled, KV max not sampled"
    full = {"server_metrics": {
        "num_requests_running_max": 3, "num_requests_waiting_max": 0, "kv_cache_usage_perc_max": 0.0029,
        "not_sampled": {}, "prefix_cache_hit_rate": 0.5, "spec_decode_acceptance_rate": 0.6,
        "spec_decode_mean_acceptance_length": 2.8,
    }}  # fmt: skip
    assert results_line(full) == (
        "server: running max 3, waiting max 0, KV max 0.29 %, prefix cache hits 50 %, "
        "spec decode acceptance 60 % (mean length 2.80)"
    )
    absent = {"server_metrics": {"num_requests_running_max": None, "not_sampled": {}}}
    assert results_line(absent) == "server: running max N/A, waiting max N/A, KV max N/A"


def test_prompts_dropped_for_length_are_counted_and_an_unchecked_step_says_so() -> None:
    dropped = {"prompt_filter": {"over_max_prompt_chars": 1, "tokens_checked": True, "max_model_len": 4096,
                                 "over_max_model_len": 2}}  # fmt: skip
    assert results_line(dropped) == "prompts dropped: 1 over max_prompt_chars, 2 over max_model_len 4096"
    clean = {"prompt_filter": {"over_max_prompt_chars": 0, "tokens_checked": True, "over_max_model_len": 0}}
    assert results_line(clean) == ""
    unchecked = {"prompt_filter": {"over_max_prompt_chars": None, "tokens_checked": False, "over_max_model_len": None}}
    assert results_line(unchecked) == "token lengths not checked"
