"""Env that cannot reach the target, or that the embedded engine refuses, is caught when the plan loads."""

from __future__ import annotations

from pathlib import Path

import pytest

from console.cli import main
from engine.config_file import ConfigFileError
from runners.plan.load import load_plan
from runners.plan.preflight import preflight_warnings
from tests.support.plans import Plan, Table, sharegpt_phase
from tests.support.project import ENGINE_CONFIG


def _plan(tmp_path: Path, serve: Table, arms: dict[str, Table]) -> Path:
    """Arms (name -> env) against `serve`, one small ShareGPT phase."""
    arm_tables = [{"name": name, "env": env} for name, env in arms.items()]
    return Plan("reach", serve, arm_tables, [sharegpt_phase(requests=2, max_tokens=4)]).write(tmp_path)


EXTERNAL: Table = {"kind": "external", "url": "http://127.0.0.1:9"}
EMBEDDED: Table = {"kind": "process", "engine_config": str(ENGINE_CONFIG)}


def test_arms_that_differ_by_env_on_an_external_server_do_not_load(tmp_path: Path) -> None:
    path = _plan(tmp_path, EXTERNAL, {"a": {"CUTE_WO_SPLIT": "1"}, "b": {"CUTE_WO_SPLIT": "8"}})
    with pytest.raises(ConfigFileError) as caught:
        load_plan(path)
    [problem] = caught.value.problems
    assert problem.startswith(f"{path}: arms[*].env: serve.kind is external (http://127.0.0.1:9)")
    assert "a (CUTE_WO_SPLIT), b (CUTE_WO_SPLIT)" in problem and "Use a process or docker target" in problem


def test_the_same_env_on_every_arm_of_an_external_server_loads_with_a_warning(tmp_path: Path) -> None:
    loaded = load_plan(_plan(tmp_path, EXTERNAL, {"a": {"X": "1"}, "b": {"X": "1"}}))
    [finding] = preflight_warnings(loaded.plan)
    assert finding.topic == "env" and finding.message.startswith("arms[0].env, arms[1].env: serve.kind is external")
    assert "no verdict" in finding.message


def test_no_env_at_all_on_an_external_server_is_fine(tmp_path: Path) -> None:
    loaded = load_plan(_plan(tmp_path, EXTERNAL, {"a": {}, "b": {}}))
    assert preflight_warnings(loaded.plan) == []


@pytest.mark.parametrize(
    ("arms", "extra_serve", "field"),
    [
        ({"a": {"CUTE_WO_SPLIT": "1"}, "b": {"CUTE_WO_SPLIT": "3"}}, {}, "arms[1].env.CUTE_WO_SPLIT: '3'"),
        ({"a": {"CUTE_WO_SPLIT": "1"}}, {"env": {"CUTE_WO_SPLIT": "eight"}}, "serve.env.CUTE_WO_SPLIT: 'eight'"),
        ({"a": {}}, {"supplementary_env": {"CUTE_WO_SPLIT": "16"}}, "serve.supplementary_env.CUTE_WO_SPLIT: '16'"),
    ],
)
def test_a_wo_split_the_embedded_engine_refuses_fails_the_plan_naming_the_field(
    tmp_path: Path, arms: dict[str, Table], extra_serve: Table, field: str
) -> None:
    with pytest.raises(ConfigFileError) as caught:
        load_plan(_plan(tmp_path, EMBEDDED | extra_serve, arms))
    assert any(field in p and "is not one of 1, 2, 4, 8" in p for p in caught.value.problems), caught.value.problems


def test_an_engine_config_the_engine_refuses_fails_the_plan(tmp_path: Path) -> None:
    config = tmp_path / "engine.toml"
    config.write_text("[model]\nhidden = 96\nheads = 6\nkv_heads = 5\n")  # heads % kv_heads fails its own check
    with pytest.raises(ConfigFileError) as caught:
        load_plan(_plan(tmp_path, {"kind": "process", "engine_config": str(config)}, {"a": {"CUTE_WO_SPLIT": "2"}}))
    assert any(p.startswith(f"{tmp_path / 'plan.toml'}: serve.engine_config: ") for p in caught.value.problems)


def test_keys_the_embedded_engine_does_not_read_are_a_warning(tmp_path: Path) -> None:
    loaded = load_plan(
        _plan(tmp_path, EMBEDDED, {"a": {"CUTE_WO_SPLIT": "1"}, "b": {"CUTE_WO_SPLIT": "8", "FOO": "1"}})
    )
    [finding] = preflight_warnings(loaded.plan)
    assert finding.topic == "env" and finding.message.startswith("arms[1].env: the embedded engine reads only")
    assert "FOO cannot change what it runs" in finding.message


def test_validate_refuses_a_wo_split_of_3_in_one_clear_line(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    path = _plan(tmp_path, EMBEDDED, {"a": {"CUTE_WO_SPLIT": "1"}, "b": {"CUTE_WO_SPLIT": "3"}})
    assert main(["validate", str(path)]) == 2
    err = capsys.readouterr().err
    assert f"{path}: arms[1].env.CUTE_WO_SPLIT: '3' is not one of 1, 2, 4, 8" in err and "Traceback" not in err


def test_run_refuses_it_before_a_run_directory_exists(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    path = _plan(tmp_path, EMBEDDED, {"a": {"CUTE_WO_SPLIT": "1"}, "b": {"CUTE_WO_SPLIT": "3"}})
    assert main(["run", str(path), "--headless", "--out", str(tmp_path / "run")]) == 2
    assert "arms[1].env.CUTE_WO_SPLIT" in capsys.readouterr().err
    assert not (tmp_path / "run").exists()
