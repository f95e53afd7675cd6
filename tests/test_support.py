"""The tests' support layer itself: a plan built with `Plan` reads back as the values it was given."""

from __future__ import annotations

import sys
from pathlib import Path

from runners.plan.load import load_plan
from tests.support.plans import Plan, split_arms, toml_value, write_plan
from tests.support.project import ENGINE_CONFIG

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised only on Python 3.10
    import tomli as tomllib


def test_a_plan_reads_back_as_built_and_loads(tmp_path: Path) -> None:
    assert toml_value('a "quoted" \\ path') == '"a \\"quoted\\" \\\\ path"'
    assert [toml_value(v) for v in (True, 3, 0.5, ["x", 1], {"K": "v", "N": 8})] == [
        "true", "3", "0.5", '["x", 1]', '{ K = "v", N = 8 }'
    ]  # fmt: skip
    plan = Plan("p", {"kind": "external", "url": "http://127.0.0.1:9"}, [{"name": "a", "env": {}}],
                [{"name": "x", "kind": "sharegpt", "requests": 2}], top={"description": "d"},
                sections={"watchdog": {"unified_memory": "no"}}, tail_toml='\n[gates]\nbaseline = "a"\n')  # fmt: skip
    assert tomllib.loads(plan.text()) == {
        "name": "p", "description": "d", "serve": {"kind": "external", "url": "http://127.0.0.1:9"},
        "watchdog": {"unified_memory": "no"}, "arms": [{"name": "a", "env": {}}],
        "phases": [{"name": "x", "kind": "sharegpt", "requests": 2}], "gates": {"baseline": "a"},
    }  # fmt: skip

    path = write_plan(tmp_path, requests=4)
    data = tomllib.loads(path.read_text())
    assert data["serve"] == {"kind": "process", "ready_timeout_s": 60, "engine_config": str(ENGINE_CONFIG)}
    assert data["arms"] == split_arms() and data["phases"][0]["requests"] == 4
    assert [a.name for a in load_plan(path).plan.arms] == ["split1", "split8"]
