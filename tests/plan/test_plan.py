"""Plans: the shipped ones validate; errors name the file, the line and the field."""

from __future__ import annotations

from pathlib import Path

import pytest

from engine.config_file import ConfigFileError
from runners.plan.load import load_plan
from runners.plan.steps import StepKey
from runners.run.paths import DEMO_PLAN
from tests.support.plans import write_plan


def test_demo_plan_validates_and_orders_steps() -> None:
    loaded = load_plan(DEMO_PLAN)
    assert [a.name for a in loaded.plan.arms] == ["wo-split-1", "wo-split-8"]
    assert [a.env for a in loaded.plan.arms] == [{"CUTE_WO_SPLIT": "1"}, {"CUTE_WO_SPLIT": "8"}]
    assert loaded.serve_command()[1:3] == ["-m", "engine.server"]


def test_primary_steps_of_every_arm_run_before_supplementary(tmp_path: Path) -> None:
    path = write_plan(tmp_path)
    path.write_text(
        path.read_text()
        + '\n[[phases]]\nname = "profiled"\nkind = "sharegpt"\nmode = "supplementary"\nrequests = 1\n'
        + "repeats = 2\n"
    )
    steps = load_plan(path).plan.steps()
    assert steps == [
        StepKey("split1", "primary", "replay", 0),
        StepKey("split8", "primary", "replay", 0),
        StepKey("split1", "supplementary", "profiled", 0),
        StepKey("split1", "supplementary", "profiled", 1),
        StepKey("split8", "supplementary", "profiled", 0),
        StepKey("split8", "supplementary", "profiled", 1),
    ]


def problems(path: Path) -> str:
    with pytest.raises(ConfigFileError) as info:
        load_plan(path)
    return "\n".join(info.value.problems)


def test_unknown_field_names_file_line_and_field(tmp_path: Path) -> None:
    path = write_plan(tmp_path)
    path.write_text(path.read_text().replace("concurrency = 3", "concurency = 3"))
    text = problems(path)
    line = next(i for i, ln in enumerate(path.read_text().splitlines(), 1) if ln.startswith("concurency"))
    assert f"{path}:{line}: phases[0].concurency: unknown field" in text


def test_wrong_type_in_second_arm_points_at_its_line(tmp_path: Path) -> None:
    path = write_plan(tmp_path)
    path.write_text(path.read_text().replace("env = { CUTE_WO_SPLIT = 8 }", "env = { CUTE_WO_SPLIT = [8] }"))
    text = problems(path)
    line = next(i for i, ln in enumerate(path.read_text().splitlines(), 1) if "[8]" in ln)
    assert f"{path}:{line}: arms[1].env.CUTE_WO_SPLIT" in text


def test_duplicate_arms_bad_names_and_missing_fields(tmp_path: Path) -> None:
    original = write_plan(tmp_path).read_text()
    path = tmp_path / "plan.toml"
    path.write_text(original.replace('name = "split8"', 'name = "split1"'))
    assert "(top level): arms names must be unique; repeated: split1" in problems(path)
    path.write_text(original.replace("requests = 6\n", ""))
    assert "phases[0].requests: required field is missing" in problems(path)
    path.write_text(original.replace('name = "split1"', 'name = "bad name/../x"'))
    assert "arms[0].name" in problems(path) and "names directories" in problems(path)


def test_invalid_toml_and_missing_files_are_named(tmp_path: Path) -> None:
    path = write_plan(tmp_path)
    path.write_text(path.read_text().replace("requests = 6", "requests = = 6"))
    assert f"{path}: not valid TOML" in problems(path) and "line" in problems(path)
    assert f"{tmp_path / 'nope.toml'}: no such file" in problems(tmp_path / "nope.toml")
    path = write_plan(tmp_path)
    path.write_text(path.read_text().replace("ignore_eos = true", 'ignore_eos = true\ndataset = "missing.json"'))
    assert f"phases[0].dataset: {tmp_path / 'missing.json'} does not exist" in problems(path)


def test_serve_needs_exactly_one_target_and_a_port_placeholder(tmp_path: Path) -> None:
    path = write_plan(tmp_path, command=["{python}", "-m", "engine.server", "--port", "{port}"])
    text = path.read_text()
    path.write_text(text.replace("[serve]\n", '[serve]\nengine_config = "x.toml"\n'))
    assert "serve: give engine_config or command, not both" in problems(path)
    path.write_text(
        text.replace('"--port", "{port}"', '"--port", "8000"').replace("'--port', '{port}'", "'--port', '8000'")
    )
    assert "command must contain {port}" in problems(path)
    path.write_text(text.replace("command = ", "# command = "))
    assert "give either engine_config (the embedded engine) or command" in problems(path)
