"""plan_differences on hand-made plans: what changes the work measured counts, how it is observed does not,
and a secret's value is never shown."""

from __future__ import annotations

from runners.gates.plan_diff import MeasuredWork, PlanDifference, plan_differences
from runners.plan.model import Plan
from runners.run.redact import REDACTED, redacted

SERVE = {"kind": "process", "command": ["{python}", "-m", "engine.server", "--port", "{port}"]}


def plan(phases: list[dict] | None = None, arms: list[dict] | None = None, serve: dict | None = None) -> Plan:
    return Plan.model_validate({
        "name": "p",
        "serve": serve or SERVE,
        "arms": arms or [{"name": "a", "env": {"SPLIT": "1"}}],
        "phases": phases or [{"name": "replay", "kind": "sharegpt", "requests": 8, "max_tokens": 16}],
    })  # fmt: skip


def diff(a: Plan, b: Plan, **sides) -> list[tuple[str, str, str]]:
    work_a = MeasuredWork(a, sides.get("datasets_a", ()), sides.get("models_a", ()))
    work_b = MeasuredWork(b, sides.get("datasets_b", ()), sides.get("models_b", ()))
    return [(d.what, d.a, d.b) for d in plan_differences(work_a, work_b)]


def test_the_same_plan_has_no_difference_and_observation_settings_do_not_count() -> None:
    assert diff(plan(), plan()) == []
    observed = {"name": "replay", "kind": "sharegpt", "requests": 8, "max_tokens": 16, "repeats": 5,
                "http_timeout_s": 9.0, "percentiles": [50.0], "metrics_interval_s": 2.0}  # fmt: skip
    assert diff(plan(), plan([observed])) == []


def test_phase_fields_that_change_the_work_each_count_with_both_values() -> None:
    changed = {"name": "replay", "kind": "sharegpt", "requests": 4, "max_tokens": 16, "concurrency": 2,
               "ignore_eos": True, "temperature": 0.5, "endpoint": "completions"}  # fmt: skip
    assert set(diff(plan(), plan([changed]))) == {
        ("phase replay: endpoint", "chat", "completions"),
        ("phase replay: temperature", "0.0", "0.5"),
        ("phase replay: ignore_eos", "false", "true"),
        ("phase replay: concurrency", "none", "2"),
        ("phase replay: requests", "8", "4"),
    }


def test_a_phase_in_one_plan_only_or_of_another_kind_and_the_phase_reproduction_reads() -> None:
    long = {"name": "long", "kind": "longdecode"}
    other = {"name": "replay", "kind": "concurrent", "streams": 4}
    got = diff(plan(), plan([other, long]))
    assert ("phase replay: kind", "sharegpt", "concurrent") in got
    assert ("phase long", "absent", "a longdecode phase") in got


def test_the_data_a_phase_read_counts_by_its_sha256_where_both_runs_recorded_one() -> None:
    record = {"phase": "replay", "field": "dataset", "sha256": "aa"}
    assert diff(plan(), plan(), datasets_a=(record,), datasets_b=({**record, "sha256": "bb"},)) == [
        ("phase replay: dataset sha256", "aa", "bb")
    ]
    assert diff(plan(), plan(), datasets_a=(record,)) == []  # one side unrecorded: nothing to say


def test_arm_env_per_key_and_a_secret_never_shown() -> None:
    b = plan(arms=[{"name": "a", "env": {"SPLIT": "8", "HF_TOKEN": "hf_planted"}}, {"name": "new"}])
    got = diff(plan(), b)
    # SPLIT varies between b's arms (shown there) but not in a's one arm: not known harmless there
    assert got == [("arm a: env SPLIT", redacted("1"), "8"), ("arm a: env HF_TOKEN", "unset", redacted("hf_planted"))]
    assert "hf_planted" not in repr(got)


def test_the_serve_target_command_env_and_model_served() -> None:
    serve_b = {**SERVE, "command": [*SERVE["command"], "--api-key", "sk-planted"], "env": {"HF_TOKEN": "x"},
               "ready_timeout_s": 5.0}  # fmt: skip
    got = diff(plan(), plan(serve=serve_b), models_a=("tiny",), models_b=("big",))
    assert got[0][0] == "serve: command" and "sk-planted" not in got[0][2] and REDACTED in got[0][2]
    assert got[1:] == [("serve: env HF_TOKEN", "unset", redacted("x")), ("serve: model served", "tiny", "big")]


def test_a_difference_reads_as_one_line_and_as_json() -> None:
    d = PlanDifference("phase replay: max_tokens", "16", "8")
    assert d.describe() == "phase replay: max_tokens: 16 (A) vs 8 (B)"
    assert d.as_dict() == {"what": "phase replay: max_tokens", "a": "16", "b": "8"}
