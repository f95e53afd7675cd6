"""The soak session alone: a fake serve runtime in front of a real loopback mock server, and `judge` by hand.

The end-to-end tests (tests/soak/test_soak.py) drive real runners and engines; these pin the session's
own decisions: what a target that dies, fails readiness or cannot be stopped does to the steps and the run.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Literal

import pytest

from runners.plan.steps import Session
from runners.replay.usage_probe import UsageProbe, probe_continuous_usage
from runners.run.events import EventLog
from runners.run.files import read_json, read_jsonl
from runners.run.provenance import start_session
from runners.run.rundir import RunDir
from runners.run.runs import create_run, load_run_plan
from runners.run.targets import TargetRef, read_targets
from runners.soak.session import SoakSession
from runners.soak.step import StepObservation, judge
from runners.testbed.mock_server import MockSettings
from tests.support.fake_runtime import FakeRuntime
from tests.support.mock import StartMock
from tests.support.plans import Plan, ab_arms, engine_serve, sharegpt_phase

SESSION_DEADLINE_S = 60.0


def _plan(tmp_path: Path, repeats: int = 2) -> Path:
    phase = sharegpt_phase(requests=4, concurrency=2, repeats=repeats, http_timeout_s=10, metrics_interval_s=0.5)
    return Plan("fake", engine_serve(), ab_arms(), [phase]).write(tmp_path)


async def _run_session(
    tmp_path: Path, start_mock: StartMock, scripts: dict[str, dict[str, object]], settings: MockSettings | None = None
):
    """Run one session over a fresh run directory; returns (result, run dir, runtimes by arm, events)."""
    url = await start_mock(settings or MockSettings(ttft_ms=20, itl_ms=5, tokens=16))
    run = create_run(_plan(tmp_path), tmp_path / "run", tmp_path / "runs")
    start_session(run, ["test"])  # provenance.json, where each serve session's target is recorded
    runtimes: dict[str, FakeRuntime] = {}

    def factory(session: Session) -> FakeRuntime:
        runtime = FakeRuntime(url, session.arm.name, scripts.get(session.arm.name, {}), run)
        runtimes[session.arm.name] = runtime
        return runtime

    events = EventLog(run.events)
    soak = SoakSession(run, load_run_plan(run), events, asyncio.Event(), runtime_factory=factory)
    result = await asyncio.wait_for(soak.run(), SESSION_DEADLINE_S)
    events.close()
    return result, run, runtimes, read_jsonl(run.events)


def _failures(events: list[dict]) -> list[tuple[str, int, str]]:
    return [(e["step"]["arm"], e["step"]["rep"], e["reason"]) for e in events if e["type"] == "step_failed"]


async def test_every_step_of_every_arm_runs_and_each_target_is_listed_then_stopped(
    tmp_path: Path, start_mock: StartMock
) -> None:
    result, run, runtimes, events = await _run_session(tmp_path, start_mock, {})
    assert (result.status, result.steps_done, result.steps_failed) == ("finished", 4, 0)
    assert [runtimes[a].calls for a in "ab"] == [["start", "wait_ready", "stop"]] * 2
    types = [e["type"] for e in events if e["type"].startswith(("serve_", "step_finished", "env_"))]
    assert types == ["serve_starting", "serve_ready", "env_unverified", "step_finished", "step_finished",
                     "serve_stopped"] * 2  # fmt: skip
    for arm in "ab":  # listed while the target lived, emptied once it stopped
        assert runtimes[arm].targets_seen == [[TargetRef("process", arm, "primary", pid=4242, start_ticks=1)]]
    assert read_targets(run) == []
    state = read_json(run.state_json)
    assert (state["status"], state["current"], state["steps_done"]) == ("finished", None, 4)
    assert all(RunDir(run.root).is_done(s) for s in load_run_plan(run).plan.steps())


@pytest.mark.parametrize("mode", ["honour", "reject"])
async def test_each_target_is_probed_once_for_usage_on_every_chunk_and_phase_json_names_the_itl_basis(
    tmp_path: Path, start_mock: StartMock, monkeypatch: pytest.MonkeyPatch, mode: Literal["honour", "reject"]
) -> None:
    probed: list[str] = []

    async def counted(base_url: str, model: str, endpoint: Literal["chat", "completions"]) -> UsageProbe:
        probed.append(base_url)
        return await probe_continuous_usage(base_url, model, endpoint)

    monkeypatch.setattr("runners.soak.step.probe_continuous_usage", counted)
    settings = MockSettings(ttft_ms=5, itl_ms=5, tokens=16, tokens_per_chunk=4, continuous_usage=mode)
    result, run, _runtimes, _events = await _run_session(tmp_path, start_mock, {}, settings)
    assert (result.status, result.steps_done) == ("finished", 4)  # a refusing server does not fail a step
    assert len(probed) == 2  # one target per arm, each probed before its first step only
    for step in load_run_plan(run).plan.steps():
        phase = read_json(run.step_dir(step) / "phase.json")
        records = read_jsonl(run.step_dir(step) / "requests.jsonl")
        assert phase["usage_probe"]["continuous_usage"] is (mode == "honour"), phase["usage_probe"]
        assert phase["itl_basis"] == phase["stats"]["itl_basis"] == ("per_token" if mode == "honour" else "per_chunk")
        assert all(r["output_tokens"] == 16 for r in records)
        assert all(r["chunk_tokens"] == ([0, 4, 4, 4, 4] if mode == "honour" else None) for r in records)


async def test_a_target_that_dies_mid_step_fails_that_step_and_the_rest_of_its_arm_then_the_next_arm_runs(
    tmp_path: Path, start_mock: StartMock
) -> None:
    result, _run, runtimes, events = await _run_session(tmp_path, start_mock, {"a": {"die_after_s": 0.05}})
    assert (result.status, result.steps_done, result.steps_failed) == ("failed", 2, 2)
    assert _failures(events) == [
        ("a", 0, "the serve target killed by SIGKILL from outside the runner (signal 9) during the step; see its "
                 "serve.log"),
        ("a", 1, "not run: the serve target died in an earlier step"),
    ]  # fmt: skip
    assert runtimes["a"].calls[-1] == "stop" and runtimes["b"].calls == ["start", "wait_ready", "stop"]


async def test_a_target_that_never_becomes_ready_fails_its_steps_and_is_still_stopped(
    tmp_path: Path, start_mock: StartMock
) -> None:
    result, _run, runtimes, events = await _run_session(tmp_path, start_mock, {"b": {"not_ready": True}})
    assert (result.status, result.steps_done, result.steps_failed) == ("failed", 2, 2)
    reason = "serve target failed: the fake target never became ready"
    assert _failures(events) == [("b", 0, reason), ("b", 1, reason)]
    assert [e["reason"] for e in events if e["type"] == "serve_failed"] == ["the fake target never became ready"]
    assert runtimes["b"].calls == ["start", "wait_ready", "stop"]


async def test_a_target_that_cannot_be_stopped_ends_the_run_before_the_next_arm_starts(
    tmp_path: Path, start_mock: StartMock
) -> None:
    result, _run, runtimes, events = await _run_session(tmp_path, start_mock, {"a": {"stop_fails": True}})
    assert result.status == "failed"
    assert result.reason == "the serve target of a/primary could not be stopped: the fake target ignores every signal"
    assert "b" not in runtimes  # the next arm must not share the GPU with a target that may still run
    assert [e["type"] for e in events][-1] == "run_finished"


@pytest.mark.parametrize(
    ("obs", "outcome", "failure", "done"),
    [
        (StepObservation(True, ok_requests=3), "done", None, True),
        (StepObservation(True, ok_requests=3, profile_killed=True), "restart", None, True),
        (StepObservation(True, ok_requests=0, first_error="HTTP 500"), "failed",
         "no request succeeded; first error: HTTP 500", False),
        (StepObservation(True, ok_requests=0, profile_killed=True), "restart",
         "no request succeeded; first error: no request was sent", False),
        (StepObservation(True, aborted=True, ok_requests=1), "aborted", None, False),
        (StepObservation(False, deadline_s=30), "failed", "step passed its deadline of 30 s", False),
        (StepObservation(False, target_ended="OOM-killed (exit code 137)"), "target_died",
         "the serve target OOM-killed (exit code 137) during the step; see its serve.log", False),
        (StepObservation(True, ok_requests=5, target_ended="exited (exit code 1)"), "target_died",
         "the serve target exited (exit code 1) during the step; see its serve.log", False),
        (StepObservation(False, memory="memory watchdog ABORT: low"), "target_died", "memory watchdog ABORT: low",
         False),
        (StepObservation(True, ok_requests=5, memory="memory watchdog KILL: x", target_ended="killed"),
         "target_died", "memory watchdog KILL: x", False),
        (StepObservation(True, ok_requests=5, memory="memory watchdog ABORT: after the replay"), "done", None, True),
    ],
)  # fmt: skip
def test_judge(obs: StepObservation, outcome: str, failure: str | None, done: bool) -> None:
    verdict = judge(obs)
    assert (verdict.outcome, verdict.failure, verdict.done) == (outcome, failure, done)
