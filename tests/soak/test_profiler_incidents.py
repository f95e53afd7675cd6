"""Profiler incidents for real: the embedded engine with test faults, a real runner, a real guard.

A stop_profile that never answers (or trickles) must not hang the soak: the target is killed, the
trace recorded as lost, and the next step runs on a restarted, verified target.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from runners.plan.steps import PROFILE_DIR_NAME
from runners.run.files import read_json, read_jsonl
from tests.support.plans import PROFILED_PHASES, fault_plan
from tests.support.processes import run_headless

pytestmark = pytest.mark.slow


def _run(tmp_path: Path, faults: list[str]) -> tuple[subprocess.CompletedProcess, Path]:
    out = tmp_path / "run"
    return run_headless(fault_plan(tmp_path, faults, PROFILED_PHASES), out), out


def test_a_profiled_step_captures_a_trace_and_primary_steps_are_never_profiled(tmp_path: Path) -> None:
    """No faults: the supplementary step's trace is written and recorded; the primary step has none."""
    result, out = _run(tmp_path, [])
    assert result.returncode == 0, result.stdout + result.stderr
    phase = read_json(out / "arms" / "split4" / "supplementary" / "profiled" / "0" / "phase.json")
    assert phase["profile"]["status"] == "captured"
    trace = Path(phase["profile"]["trace"])
    assert trace.is_file() and "traceEvents" in json.loads(trace.read_text())
    step_dir = out / "arms" / "split4" / "supplementary" / "profiled" / "0"
    assert trace.parent == step_dir / "profile"  # collected out of the runner-owned trace directory
    assert not list((out / "arms" / "split4" / "supplementary" / PROFILE_DIR_NAME).iterdir())
    kernels = phase["profile"]["kernels"]
    assert kernels["source"] == "cpu" and kernels["rows"] and all(r["n_calls"] > 0 for r in kernels["rows"])
    assert "## Profiled steps" in (out / "summary.md").read_text()
    assert read_json(out / "arms" / "split4" / "primary" / "clean" / "0" / "phase.json")["profile"] is None
    types = [e["type"] for e in read_jsonl(out / "events.jsonl")]
    assert types.count("profile_started") == 1 and types.count("profile_captured") == 1
    assert "serve_restarting" not in types


@pytest.mark.parametrize(
    ("fault", "status", "event", "limitation"),
    [
        ("stop_profile_hang", "lost", "profile_lost", "trace lost"),  # hangs before it writes a trace
        ("stop_profile_trickle=0.5", "recovered after kill", "profile_recovered", "trace recovered after kill"),
    ],
)
def test_a_stop_profile_that_does_not_finish_kills_the_target_and_the_soak_goes_on(
    tmp_path: Path, fault, status, event, limitation
) -> None:
    """stop_profile hangs or trickles: deadline, target killed, what was written kept, restart, next step."""
    result, out = _run(tmp_path, [fault])
    assert result.returncode == 0, result.stdout + result.stderr
    events = read_jsonl(out / "events.jsonl")
    said = [e for e in events if e["type"] == event]
    assert len(said) == 1 and "did not answer within 2 s" in said[0]["reason"] and "killed" in said[0]["reason"]
    killed = [e for e in events if e["type"] == "serve_killed"]
    assert killed and killed[0]["arm"] == "split4"
    assert any(e["type"] == "serve_restarting" for e in events)
    finished = [e["step"]["phase"] for e in events if e["type"] == "step_finished"]
    assert finished == ["clean", "profiled", "after"]  # the profiled step's measurements stand
    verified = [e for e in events if e["type"] == "env_verified"]
    assert len(verified) == 3  # primary, supplementary, and the restarted supplementary target
    phase = read_json(out / "arms" / "split4" / "supplementary" / "profiled" / "0" / "phase.json")
    assert phase["profile"]["status"] == status
    if status == "lost":
        assert phase["profile"]["trace"] is None
    else:  # the engine wrote its trace, then trickled its answer: the trace is in the step, with its table
        assert Path(phase["profile"]["trace"]).parent == out / "arms/split4/supplementary/profiled/0/profile"
        assert phase["profile"]["kernels"]["source"] == "cpu" and phase["profile"]["kernels"]["rows"]
    limitations = (out / "summary.md").read_text().split("## Known limitations")[1].split("## Provenance")[0]
    assert f"- {limitation}: split4/supplementary/profiled/0: " in limitations
    assert "did not answer within 2 s" in limitations
    assert "the serve target was restarted 1 time(s) mid-session" in limitations
