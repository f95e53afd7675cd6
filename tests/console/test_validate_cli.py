"""`gb10-console validate`: pre-flight warnings are printed, and a plan that has them is still valid (exit 0)."""

from __future__ import annotations

from pathlib import Path

import pytest

from console.cli import main
from tests.support.plans import profiled_vllm_plan


def test_validate_prints_the_profiler_warning_and_exits_0(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    assert main(["validate", str(profiled_vllm_plan(tmp_path))]) == 0
    out = capsys.readouterr().out
    assert "plan mini (" in out and "): valid" in out
    [line] = [ln for ln in out.splitlines() if "profiler" in ln and "warning" in ln]
    assert line.startswith("  warning: profiler_stop_timeout: phase profiled: profile_stop_timeout_s = 60 s with "
                           "stack tracing on (torch_profiler_with_stack, vLLM 0.32 default)")  # fmt: skip
