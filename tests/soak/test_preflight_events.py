"""The runner emits the plan's pre-flight warnings as `preflight_warning` events when a session starts."""

from __future__ import annotations

from pathlib import Path

import pytest

from runners.run.files import read_jsonl
from runners.run.runs import create_run
from runners.soak import execute as runner
from tests.support.fake_runtime import NoGuard
from tests.support.plans import profiled_vllm_plan


async def test_a_session_start_emits_each_preflight_warning(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(runner, "GuardLink", NoGuard)
    run = create_run(profiled_vllm_plan(tmp_path), tmp_path / "run", tmp_path)
    result = await runner.execute(run, argv=["test"])
    assert result.status == "failed" and "no guard in this test" in result.reason
    warnings = [e for e in read_jsonl(run.events) if e["type"] == "preflight_warning"]
    assert [w["topic"] for w in warnings] == ["profiler_stop_timeout"]
    assert warnings[0]["message"].startswith("phase profiled: profile_stop_timeout_s = 60 s with stack tracing on")
