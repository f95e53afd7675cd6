"""Secret by default: which env values are shown (the policy), `{ from_env = NAME }`, and the run directory's
plan copy (values left out, read again on resume)."""

from __future__ import annotations

from pathlib import Path

import pytest
import tomllib

from runners.plan.fields import FromEnv, HeldValue
from runners.plan.load import load_plan
from runners.plan.model import Plan
from runners.run.plan_copy import PlanCopyError, redacted_plan_text, restore_held_values
from runners.run.redact import REDACTED, env_policy, redacted, sha_prefix
from tests.support.plans import Plan as PlanFile
from tests.support.plans import engine_serve, sharegpt_phase


def _plan(arms: list[dict], serve_env: dict | None = None, **top: object) -> Plan:
    data = {
        "name": "p", **top, "serve": {"kind": "process", "command": ["x", "{port}"], "env": serve_env or {}},
        "arms": arms, "phases": [{"name": "r", "kind": "sharegpt", "requests": 1}],
    }  # fmt: skip
    return Plan.model_validate(data)


def test_keys_under_test_and_the_allow_list_are_shown_everything_else_is_redacted() -> None:
    plan = _plan(
        [{"name": "a", "env": {"SPLIT": "1", "NGC_KEY": "n1", "FOO": "same"}},
         {"name": "b", "env": {"SPLIT": "8", "NGC_KEY": "n2", "FOO": "same"}}],
        serve_env={"VLLM_LOGGING_LEVEL": "DEBUG", "OMP_NUM_THREADS": "4", "WANDB_PROJECT": "w"},
    )  # fmt: skip
    policy = env_policy(plan)
    assert policy.varied == {"SPLIT", "NGC_KEY"}
    assert policy.env(plan.arm("a").env) == {"SPLIT": "1", "NGC_KEY": redacted("n1"), "FOO": redacted("same")}
    assert policy.env(plan.serve.env) == {
        "VLLM_LOGGING_LEVEL": "DEBUG", "OMP_NUM_THREADS": "4", "WANDB_PROJECT": redacted("w")
    }  # fmt: skip
    assert redacted("n1") == f"{REDACTED} sha256:{sha_prefix('n1').split(':')[1]}" and "n1" not in redacted("n1")
    assert redacted("n1") != redacted("n2")  # two runs' values can be told apart without being shown


def test_a_declared_secret_and_a_secret_looking_name_are_hidden_even_when_they_vary() -> None:
    arms = [{"name": "a", "env": {"MODE": "x", "OPENAI_API_KEY": "sk-1"}},
            {"name": "b", "env": {"MODE": "y", "OPENAI_API_KEY": "sk-2"}}]  # fmt: skip
    assert env_policy(_plan(arms)).env(_plan(arms).arm("a").env) == {"MODE": "x", "OPENAI_API_KEY": redacted("sk-1")}
    declared = _plan(arms, secret=["MODE"])
    assert env_policy(declared).env(declared.arm("b").env) == {
        "MODE": redacted("y"),
        "OPENAI_API_KEY": redacted("sk-2"),
    }
    with pytest.raises(ValueError, match="not environment variable names"):
        _plan(arms, secret=["not a name"])


def test_from_env_holds_only_the_name_and_is_read_when_the_target_starts() -> None:
    plan = _plan([{"name": "a", "env": {"HF_TOKEN": {"from_env": "MY_HF"}}}], serve_env={"HF_HUB_OFFLINE": 1})
    assert plan.arm("a").env["HF_TOKEN"] == FromEnv(from_env="MY_HF")
    assert "hf_secret" not in plan.model_dump_json()
    assert plan.session_env("a", "primary", {"MY_HF": "hf_secret"}) == {"HF_HUB_OFFLINE": "1", "HF_TOKEN": "hf_secret"}
    assert plan.missing_env_values({"MY_HF": "x"}) == []
    assert plan.missing_env_values({}) == ['arms[0].env.HF_TOKEN: { from_env = "MY_HF" }, but MY_HF is not set']
    with pytest.raises(ValueError, match="MY_HF is not set"):
        plan.session_env("a", "primary", {})
    assert env_policy(plan).value("HF_TOKEN", plan.arm("a").env["HF_TOKEN"]) == f"{REDACTED} from_env MY_HF"
    with pytest.raises(ValueError, match="from_env"):
        _plan([{"name": "a", "env": {"HF_TOKEN": {"from_env": "not a name"}}}])


def _plan_file(tmp_path: Path, arm_env: dict, serve_env: dict) -> Path:
    serve = {"kind": "process", **engine_serve(), "env": serve_env}
    arms = [{"name": "a", "env": {"CUTE_WO_SPLIT": "1", **arm_env}}, {"name": "b", "env": {"CUTE_WO_SPLIT": "8"}}]
    return PlanFile("p", serve, arms, [sharegpt_phase(requests=1)]).write(tmp_path / "src")


def test_the_plan_copy_leaves_hidden_values_out_and_resume_reads_them_again(tmp_path: Path) -> None:
    source = _plan_file(tmp_path, {"NGC_KEY": "ngc-planted-1"}, {"HF_TOKEN": "hf_planted2", "GIT": {"from_env": "X"}})
    text = redacted_plan_text(source)
    assert "ngc-planted-1" not in text and "hf_planted2" not in text
    raw = tomllib.loads(text)
    assert raw["serve"]["env"] == {"HF_TOKEN": {"redacted": sha_prefix("hf_planted2")}, "GIT": {"from_env": "X"}}
    assert raw["arms"][1]["env"] == {"CUTE_WO_SPLIT": "8"}  # the key under test is copied as it is
    copy = tmp_path / "run" / "plan.toml"
    copy.parent.mkdir()
    copy.write_text(text)
    loaded = load_plan(copy, base_dir=source.parent)
    assert isinstance(loaded.plan.arm("a").env["NGC_KEY"], HeldValue)
    assert any("does not hold this value" in m for m in loaded.plan.missing_env_values({"X": "1"}))
    restored = restore_held_values(loaded, source)
    assert restored.plan.session_env("a", "primary", {"X": "1"})["NGC_KEY"] == "ngc-planted-1"
    assert restored.plan.missing_env_values({"X": "1"}) == []
    source.write_text(source.read_text().replace("ngc-planted-1", "ngc-changed"))  # the original moved on
    changed = restore_held_values(loaded, source)
    assert isinstance(changed.plan.arm("a").env["NGC_KEY"], HeldValue)  # a different value is never taken
    assert restore_held_values(loaded, tmp_path / "gone.toml") is loaded


def test_a_value_whose_spelling_cannot_be_replaced_is_refused(tmp_path: Path) -> None:
    source = _plan_file(tmp_path, {}, {})
    source.write_text(source.read_text().replace("env = {  }", 'env = { NGC_KEY = "a\\u0062c" }', 1))
    assert tomllib.loads(source.read_text())["serve"]["env"] == {"NGC_KEY": "abc"}
    with pytest.raises(PlanCopyError, match=r"serve\.env\.NGC_KEY"):
        redacted_plan_text(source)
