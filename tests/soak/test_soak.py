"""Soaks end to end: real runner processes, real engine servers, real run directories."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from runners.plan.steps import StepKey
from runners.run.control import request_abort
from runners.run.files import read_json, read_jsonl
from runners.run.rundir import RunDir, runner_alive
from runners.run.runs import create_run, spawn_detached
from runners.soak.execute import execute
from tests.support.events import events_of_type, read_events
from tests.support.plans import write_plan
from tests.support.processes import pid_gone
from tests.support.project import ENGINE_CONFIG, ROOT
from tests.support.waits import wait_until

pytestmark = pytest.mark.slow
CLI = [sys.executable, "-m", "console.cli"]


def cli(*args: str, timeout: float = 240) -> subprocess.CompletedProcess:
    return subprocess.run([*CLI, *args], capture_output=True, text=True, timeout=timeout, cwd=ROOT)


def test_headless_run_writes_the_whole_run_directory(tmp_path: Path) -> None:
    out = tmp_path / "run"
    result = cli("run", str(write_plan(tmp_path)), "--headless", "--out", str(out))
    assert result.returncode == 0, result.stderr + result.stdout
    assert "run finished: all 2 steps done" in result.stdout
    summary = read_json(out / "summary.json")
    assert [(a["arm"], a["arm_env"], a["env_status"], a["env_where"]) for a in summary["arms"]] == [
        ("split1", "CUTE_WO_SPLIT=1", "verified", "the target's /debug/config"),
        ("split8", "CUTE_WO_SPLIT=8", "verified", "the target's /debug/config"),
    ]
    for arm in summary["arms"]:
        stats = arm["stats"]
        assert stats["ok"] == 6 and stats["failed"] == 0
        assert stats["ttft_p50_ms"] > 0 and stats["tpot_p50_ms"] > 0 and stats["output_tokens"] == 72
    summary_md = (out / "summary.md").read_text()
    assert "| split8 | CUTE_WO_SPLIT=8 | verified by the target's /debug/config | 1/1 | 6 | 0 |" in summary_md
    for arm in ("split1", "split8"):
        step = out / "arms" / arm / "primary" / "replay" / "0"
        records = read_jsonl(step / "requests.jsonl")
        assert len(records) == 6 and all(r["status"] == "ok" and r["output_tokens_source"] == "usage" for r in records)
        assert all(len(r["chunk_ns"]) == 13 for r in records)  # role chunk + 12 tokens
        assert read_json(out / "done" / arm / "primary" / "replay" / "0")["stats"]["ok"] == 6
        assert not (out / "arms" / arm / "primary" / "env").exists()  # the ENV sentinel lives in the runtime dir
    state = read_json(out / "state.json")
    assert (state["status"], state["steps_done"], state["resumable"]) == ("finished", 2, False)
    prov = read_json(out / "provenance.json")
    assert prov["sessions"][0]["exit_code"] == 0 and prov["versions"]["torch"].startswith("2.")
    assert (out / "plan.toml").read_text() == (tmp_path / "plan.toml").read_text()
    assert all({"v", "t", "type"} <= e.keys() for e in read_events(out))


async def test_resume_skips_done_steps(tmp_path: Path) -> None:
    run = create_run(write_plan(tmp_path), tmp_path / "run", tmp_path)

    def abort_after_first_step(event: dict) -> None:
        if event["type"] == "step_finished":
            request_abort(run, "test: stop after the first step", by="test")

    first = await execute(run, [abort_after_first_step])
    assert first.status == "aborted" and first.exit_code == 3
    state = run.read_state()
    assert state.label() == "aborted (resumable)" and state.steps_done == 1
    assert run.is_done(StepKey("split1", "primary", "replay", 0))
    assert not run.is_done(StepKey("split8", "primary", "replay", 0))
    assert [e["arm"] for e in events_of_type(run.root, "serve_stopped")] == ["split1"]

    mark = len(read_events(run.root))
    second = await execute(run)
    assert second.status == "finished"
    later = read_events(run.root)[mark:]
    assert [e["step"]["arm"] for e in later if e["type"] == "step_skipped"] == ["split1"]
    assert [e["step"]["arm"] for e in later if e["type"] == "step_started"] == ["split8"]
    assert [e["arm"] for e in later if e["type"] == "serve_starting"] == ["split8"]
    assert len(read_json(run.provenance)["sessions"]) == 2


def test_runner_sigkill_takes_the_server_with_it_and_resume_finishes(tmp_path: Path) -> None:
    run = create_run(write_plan(tmp_path, requests=30, concurrency=2, max_tokens=48), tmp_path / "run", tmp_path)
    runner = spawn_detached(run)
    try:
        assert wait_until(lambda: events_of_type(run.root, "step_progress"), 60), (run.root / "runner.log").read_text()
        server_pid = events_of_type(run.root, "serve_ready")[0]["pid"]
        assert not pid_gone(server_pid)
        runner.send_signal(signal.SIGKILL)
        runner.wait(10)
        assert wait_until(lambda: pid_gone(server_pid), 10), f"serve process {server_pid} outlived its runner"
    finally:
        if runner.poll() is None:
            runner.kill()
    assert not runner_alive(run)
    assert run.read_state().status == "running"  # what a SIGKILL leaves: the state of the moment
    result = cli("run", "--resume", str(run.root), "--headless")
    assert result.returncode == 0, result.stderr + result.stdout
    step_dir = run.root / "arms" / "split1" / "primary" / "replay"
    assert sorted(p.name for p in step_dir.iterdir()) == ["0", "0.incomplete-1"]
    assert len(read_jsonl(step_dir / "0" / "requests.jsonl")) == 30
    assert len(read_jsonl(step_dir / "0.incomplete-1" / "requests.jsonl")) < 30  # kept, never overwritten
    assert run.read_state().status == "finished"


@pytest.mark.serial  # stops within 15 s of SIGTERM
def test_sigterm_stops_cleanly_and_leaves_the_step_resumable(tmp_path: Path) -> None:
    out = tmp_path / "run"
    plan = write_plan(tmp_path, requests=400, concurrency=4, max_tokens=64)
    proc = subprocess.Popen([*CLI, "run", str(plan), "--headless", "--out", str(out)], cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)  # fmt: skip
    try:
        assert wait_until(lambda: (out / "events.jsonl").exists() and events_of_type(out, "step_progress"), 60)
        server_pid = events_of_type(out, "serve_ready")[0]["pid"]
        t0 = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 3
    assert time.monotonic() - t0 < 15
    assert "aborted: aborted on request" in err and f"gb10-console run --resume {out}" in err
    assert "Traceback" not in err
    assert pid_gone(server_pid)
    state = read_json(out / "state.json")
    assert state["status"] == "aborted" and state["resumable"]
    assert not (out / "done").exists()
    assert events_of_type(out, "abort_requested")[0]["reason"] == "SIGTERM"
    assert events_of_type(out, "step_aborted")


def test_an_arm_whose_env_does_not_arrive_is_not_measured(tmp_path: Path) -> None:
    # the serve command overrides the arm's setting, like an engine subprocess that drops `docker -e`
    command = ["/usr/bin/env", "CUTE_WO_SPLIT=2", "{python}", "-m", "engine.server", "--config", str(ENGINE_CONFIG),
               "--port", "{port}", "--env-dir", "{env_dir}"]  # fmt: skip
    out = tmp_path / "run"
    result = cli("run", str(write_plan(tmp_path, command=command)), "--headless", "--out", str(out))
    assert result.returncode == 1
    assert "failed: 2 step(s) failed; first: split1/primary/replay/0: the target does not run the arm's env" in (
        result.stderr
    )
    mismatch = events_of_type(out, "env_mismatch")
    assert [m["mismatches"] for m in mismatch] == [
        ["CUTE_WO_SPLIT: want '1', target runs '2'"],
        ["CUTE_WO_SPLIT: want '8', target runs '2'"],
    ]
    assert not events_of_type(out, "step_started")
    assert read_json(out / "arms" / "split8" / "effective.json")["verified"] is False
    assert "| split8 | CUTE_WO_SPLIT=2 | mismatch | 0/1 |" in (out / "summary.md").read_text()


def test_cli_reports_bad_input_in_one_clear_line(tmp_path: Path) -> None:
    plan = write_plan(tmp_path)
    plan.write_text(plan.read_text().replace("concurrency = 3", "concurrency = -3"))
    result = cli("run", str(plan), "--headless")
    assert result.returncode == 2
    assert f"{plan}:" in result.stderr and "phases[0].concurrency" in result.stderr
    assert "Traceback" not in result.stderr
    result = cli("run", "--resume", str(tmp_path), "--headless")
    assert result.returncode == 2 and "is not a run directory (no run.json)" in result.stderr
    result = cli("abort", str(tmp_path))
    assert result.returncode == 2 and "Traceback" not in result.stderr


def test_a_run_directory_is_never_overwritten(tmp_path: Path) -> None:
    plan = write_plan(tmp_path)
    create_run(plan, tmp_path / "run", tmp_path)
    result = cli("run", str(plan), "--headless", "--out", str(tmp_path / "run"))
    assert result.returncode == 2
    assert "already holds a run; continue it with `gb10-console run --resume" in result.stderr


def test_another_runner_on_the_same_run_is_refused(tmp_path: Path) -> None:
    run = create_run(write_plan(tmp_path, requests=400, concurrency=2, max_tokens=64), tmp_path / "run", tmp_path)
    runner = spawn_detached(run)
    try:
        assert wait_until(lambda: runner_alive(run), 30)
        result = cli("run", "--resume", str(run.root), "--headless")
        assert result.returncode == 2 and "is being run by another runner" in result.stderr
        request_abort(run, "test done", by="test")
        assert runner.wait(30) == 3
    finally:
        if runner.poll() is None:
            runner.kill()


@pytest.mark.serial  # the demo's 3-minute bound
def test_demo_headless_finishes_both_arms_in_under_three_minutes(tmp_path: Path) -> None:
    out = tmp_path / "d"
    t0 = time.monotonic()
    result = cli("demo", "--headless", "--out", str(out), timeout=300)
    elapsed = time.monotonic() - t0
    assert result.returncode == 0, result.stderr + result.stdout
    assert elapsed < 180, f"demo took {elapsed:.0f} s"
    summary = read_json(out / "summary.json")
    plan_env = {"wo-split-1": "CUTE_WO_SPLIT=1", "wo-split-8": "CUTE_WO_SPLIT=8"}
    for arm in summary["arms"]:
        assert arm["arm_env"] == plan_env[arm["arm"]] and arm["env_status"] == "verified"
        assert arm["stats"]["ttft_p50_ms"] > 0 and arm["stats"]["tpot_p50_ms"] > 0
    lines = (out / "summary.md").read_text().splitlines()
    arms_table = lines[lines.index("## Arms (primary steps)") : lines.index("## Steps")]
    assert [ln.split(" | ")[:3] for ln in arms_table if ln.startswith("| wo-split-")] == [
        ["| wo-split-1", "CUTE_WO_SPLIT=1", "verified by the target's /debug/config"],
        ["| wo-split-8", "CUTE_WO_SPLIT=8", "verified by the target's /debug/config"],
    ]
    assert summary["verdicts"]["wo-split-1"] == "baseline"
    print(json.dumps({"demo_seconds": round(elapsed, 1)}))


@pytest.fixture(autouse=True)
def _no_stray_engine_servers(tmp_path: Path):
    """Every test must leave no engine server of its own behind (its own: its --env-dir is under tmp_path;
    engines of other test sessions on the machine are not this test's)."""
    yield
    assert wait_until(lambda: not _engine_pids(tmp_path), 10), f"left behind: {_engine_pids(tmp_path)}"


def _engine_pids(under: Path) -> set[int]:
    import psutil

    pids = set()
    for p in psutil.process_iter(["cmdline", "status"]):
        cmd = p.info["cmdline"] or []
        ours = any(str(under) in part for part in cmd)
        if "engine.server" in cmd and ours and p.info["status"] != psutil.STATUS_ZOMBIE and p.pid != os.getpid():
            pids.add(p.pid)
    return pids


def test_executing_a_finished_run_again_changes_nothing(tmp_path: Path) -> None:
    """Executing a finished run again is a no-op that still reports finished."""
    run = create_run(write_plan(tmp_path, requests=2), tmp_path / "run", tmp_path)
    assert asyncio.run(execute(run)).status == "finished"
    again = asyncio.run(execute(run))
    assert again.status == "finished" and again.steps_done == 2
    assert RunDir(run.root).read_state().status == "finished"


def test_a_sigkill_while_a_done_marker_is_written_repeats_only_that_step(tmp_path: Path) -> None:
    """Killed as the DONE marker was half written (its temp file left, never renamed): resume repeats only
    that step, every marker is whole JSON, and no serve process survives or doubles."""
    run = create_run(write_plan(tmp_path, requests=30, concurrency=2, max_tokens=48), tmp_path / "run", tmp_path)
    runner = spawn_detached(run)
    try:
        assert wait_until(lambda: events_of_type(run.root, "step_progress"), 60), (run.root / "runner.log").read_text()
        runner.send_signal(signal.SIGKILL)
        runner.wait(10)
    finally:
        if runner.poll() is None:
            runner.kill()
    marker = run.done_path(StepKey("split1", "primary", "replay", 0))
    marker.parent.mkdir(parents=True, exist_ok=True)
    half = marker.with_name(f".{marker.name}.tmp-{runner.pid}")
    half.write_text('{"stats": {"ok": 3')  # what a kill between write and rename leaves
    result = cli("run", "--resume", str(run.root), "--headless")
    assert result.returncode == 0, result.stderr + result.stdout
    starts = [e["step"]["arm"] for e in read_events(run.root) if e["type"] == "step_started"]
    assert starts == ["split1", "split1", "split8"]  # the step in flight, repeated once; nothing else
    for arm in ("split1", "split8"):
        assert read_json(run.done_path(StepKey(arm, "primary", "replay", 0)))["stats"]["ok"] == 30
    served = [e["pid"] for e in read_events(run.root) if e["type"] == "serve_ready"]
    assert len(served) == 3 and all(pid_gone(pid) for pid in served)
