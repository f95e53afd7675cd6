"""The guard process for real: a memory hog killed, a dead or silent runner's target stopped, a dead
guard making the runner fail closed, and nothing unlabelled ever touched."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from console.cli import main
from engine.units import to_gib
from runners.bench.watchdog_bench import measure
from runners.evidence.oom_record import record_run_ooms
from runners.host.meminfo import read_meminfo
from runners.host.owner import process_start_ticks
from runners.plan.load import load_plan
from runners.run.files import read_json, read_jsonl
from runners.run.rundir import RunDir, create_run_dir
from runners.run.targets import TargetRef
from runners.watchdog.targets import end_target
from tests.support.plans import write_plan
from tests.support.processes import labelled_sleeper, pid_gone
from tests.support.project import ROOT
from tests.support.waits import wait_until

pytestmark = pytest.mark.slow


def _run_dir(tmp_path: Path, watchdog: str) -> RunDir:
    plan = write_plan(tmp_path)
    plan.write_text(plan.read_text() + f"\n[watchdog]\n{watchdog}\n")
    loaded = load_plan(plan)
    return create_run_dir(tmp_path / "run", tmp_path, loaded.source, loaded.plan.name, loaded.base_dir)


@pytest.mark.serial  # the guard's reaction within 1 s, on the host's real MemAvailable
async def test_a_real_memory_hog_is_killed_within_a_second_of_the_floor(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    """1 GiB/s against floors 1/2/3 GiB below MemAvailable, prediction off: the guard kills within 1 s of the
    KILL floor crossing, and MemAvailable goes at most one minimum poll's worth of fill below it."""
    result = await measure(1.0, max_gib=4.0, max_s=20.0, workdir=tmp_path, horizon_s=0.0)
    assert result.killed and not result.predicted, result
    assert result.reaction_s is not None and result.reaction_s <= 1.0, result
    assert result.below_kill_floor_gib <= 1.0 * 0.1 + 0.05, result
    assert result.hog_allocated_gib < 4.0  # stopped before its own bound
    events = read_jsonl(tmp_path / "run" / "events.jsonl")
    ended = [e for e in events if e["type"] == "guard_ended_target"]
    assert ended and ended[0]["kill"] is True and ended[0]["outcome"].startswith("killed process group")
    assert "memory KILL" in ended[0]["cause"] and ended[0]["available_gib"] is not None
    records = read_jsonl(tmp_path / "run" / "watchdog.jsonl")
    assert {r["level"] for r in records} >= {"ok", "kill"}
    # the kill goes into this host's known-OOM record, and the same plan is refused until --force
    loaded = load_plan(tmp_path / "plan.toml")
    [record] = record_run_ooms(RunDir(tmp_path / "run"), loaded)
    assert (record["arm"], record["mode"], record["cause"]) == ("hog", "primary", "guard")
    assert record["cause_text"].startswith("memory KILL") and record["floors_gib"]["kill"] > 0
    assert any(m["level"] == "kill" for m in record["memory"]) and record["identity"].endswith("--env-dir {env_dir}")
    assert record_run_ooms(RunDir(tmp_path / "run"), loaded) == []  # recorded once
    assert main(["validate", str(tmp_path / "plan.toml")]) == 2
    assert "arm hog (primary, no env) matches a known OOM on this host: memory KILL" in capsys.readouterr().err
    assert main(["validate", "--force", str(tmp_path / "plan.toml")]) == 0


FAKE_RUNNER = textwrap.dedent(
    """
    import asyncio, os, subprocess, sys
    from pathlib import Path
    from runners.host.owner import process_start_ticks
    from runners.plan.load import load_plan
    from runners.run.rundir import RunDir, RunState
    from runners.run.targets import TargetRef, write_targets
    from runners.watchdog.link import GuardLink

    run = RunDir(Path(sys.argv[1]))
    beat = sys.argv[2] == "beat"
    run_id = run.info()["run_id"]
    # a target that does not die with its runner, as a container does not
    target = subprocess.Popen(["sleep", "300"], env={**os.environ, "GB10_RUN_ID": run_id}, start_new_session=True)
    ref = TargetRef("process", "a", "primary", pid=target.pid, start_ticks=process_start_ticks(target.pid))
    write_targets(run, [ref])
    run.write_state(RunState(run_id=run_id, plan="mini", status="running",
                             current={"arm": "a", "mode": "primary", "phase": "p", "rep": 0}))

    async def main():
        guard = GuardLink(run, load_plan(run.plan_toml).plan.watchdog)
        guard.start()
        await guard.wait_up()
        print(target.pid, guard.proc.pid, flush=True)
        if beat:
            await guard.beat_forever()
        await asyncio.sleep(300)

    asyncio.run(main())
    """
)


def _fake_runner(run: RunDir, beat: bool) -> tuple[subprocess.Popen, int, int]:
    runner = subprocess.Popen(
        [sys.executable, "-c", FAKE_RUNNER, str(run.root), "beat" if beat else "silent"],
        cwd=ROOT, stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    assert runner.stdout is not None
    target_pid, guard_pid = (int(x) for x in runner.stdout.readline().split())
    return runner, target_pid, guard_pid


@pytest.mark.serial  # the guard's reaction within 10 s
def test_the_guard_stops_the_target_of_a_sigkilled_runner_within_10_s(tmp_path: Path) -> None:
    """Runner SIGKILLed mid-step: its target (which would outlive it) is stopped; the guard then exits."""
    run = _run_dir(tmp_path, "warn_gib = 1.0\nabort_gib = 0.5\nkill_gib = 0.25")
    runner, target, guard = _fake_runner(run, beat=True)
    try:
        runner.send_signal(signal.SIGKILL)
        runner.wait(5)
        assert wait_until(lambda: pid_gone(target), 10), "the guard did not stop the target"
        assert wait_until(lambda: pid_gone(guard), 10), "the guard did not exit after its runner died"
    finally:
        for pid in (target, guard):
            if not pid_gone(pid):
                os.kill(pid, signal.SIGKILL)
    ended = [e for e in read_jsonl(run.events) if e["type"] == "guard_ended_target"]
    assert len(ended) == 1 and "is gone" in ended[0]["cause"] and ended[0]["outcome"].startswith("stopped process")
    assert any(e["type"] == "guard_stopped" and e["reason"] == "the runner is gone" for e in read_jsonl(run.events))


@pytest.mark.serial  # the guard's reaction to 2 s of silence, within 10 s
def test_a_silent_runner_mid_step_gets_its_target_stopped(tmp_path: Path) -> None:
    """A runner alive but not beating for runner_stale_s during a step: the guard stops the target."""
    run = _run_dir(tmp_path, "warn_gib = 1.0\nabort_gib = 0.5\nkill_gib = 0.25\nrunner_stale_s = 2")
    runner, target, guard = _fake_runner(run, beat=False)

    def ended() -> list[dict]:
        return [e for e in read_jsonl(run.events) if e["type"] == "guard_ended_target"]

    try:
        assert wait_until(lambda: pid_gone(target) and bool(ended()), 10)
        assert not pid_gone(guard)  # the runner still lives: the guard stays
    finally:
        runner.kill()
        runner.wait(5)
        for pid in (target, guard):
            if not pid_gone(pid):
                os.kill(pid, signal.SIGKILL)
    assert "silent for" in ended()[0]["cause"] and ended()[0]["outcome"] == f"stopped process group {target} (SIGTERM)"


def test_a_runner_whose_guard_dies_fails_closed(tmp_path: Path) -> None:
    """Guard SIGKILLed mid-step: the runner stops the target and ends the run resumable, naming why."""
    plan = write_plan(tmp_path, requests=400, concurrency=2, max_tokens=64)
    out = tmp_path / "run"
    runner = subprocess.Popen(
        [sys.executable, "-m", "console.cli", "run", str(plan), "--headless", "--out", str(out)],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    try:

        def started() -> dict | None:
            path = out / "events.jsonl"
            evs = read_jsonl(path) if path.exists() else []
            if any(e["type"] == "step_started" for e in evs):
                return next(e for e in evs if e["type"] == "guard_started")
            return None

        assert wait_until(lambda: started() is not None or runner.poll() is not None, 120)
        guard_pid = started()["pid"]
        os.kill(guard_pid, signal.SIGKILL)
        output, _ = runner.communicate(timeout=60)
    finally:
        if runner.poll() is None:
            runner.kill()
    assert runner.returncode == 1, output
    evs = read_jsonl(out / "events.jsonl")
    lost = [e for e in evs if e["type"] == "guard_lost"]
    assert lost and "the guard exited" in lost[0]["reason"]
    assert any(e["type"] == "serve_stopped" for e in evs)
    state = read_json(out / "state.json")
    assert state["status"] == "failed" and state["resumable"] is True and "fail closed" in state["reason"]


def _ref(pid: int, ticks: int | None) -> TargetRef:
    return TargetRef("process", "a", "primary", pid=pid, start_ticks=ticks)


async def test_only_labelled_targets_are_ever_touched(
    tmp_path: Path, started_processes: list[subprocess.Popen]
) -> None:
    """No label, another run's label, or a reused pid: left alone. The labelled one: ended."""
    run_id = "run-a"
    unlabelled = labelled_sleeper(None, started_processes)
    other_run = labelled_sleeper("run-b", started_processes)
    mine = labelled_sleeper(run_id, started_processes)
    refs = {
        "unlabelled": _ref(unlabelled.pid, process_start_ticks(unlabelled.pid)),
        "other": _ref(other_run.pid, process_start_ticks(other_run.pid)),
        "reused": _ref(mine.pid, (process_start_ticks(mine.pid) or 0) + 1),
    }
    for name, ref in refs.items():
        outcome = await end_target(ref, run_id, kill=True)
        assert outcome.startswith("left:"), (name, outcome)
    await asyncio.sleep(0.2)
    assert unlabelled.poll() is None and other_run.poll() is None and mine.poll() is None
    ref = _ref(mine.pid, process_start_ticks(mine.pid))
    assert (await end_target(ref, run_id, kill=True)).startswith("killed process group")
    assert mine.wait(5) == -signal.SIGKILL


def test_watch_prints_live_samples_and_json() -> None:
    """`gb10-console watch` headless: one line per sample, N/A for the missing GPU, JSON with --json."""
    cli = [sys.executable, "-m", "console.cli", "watch", "--count", "2", "--interval", "0.1"]
    text = subprocess.run(cli, capture_output=True, text=True, timeout=60, cwd=ROOT)
    assert text.returncode == 0, text.stderr
    lines = text.stdout.splitlines()
    assert len(lines) == 2 and all("avail " in line and " GiB" in line for line in lines)
    assert all(("gpu N/A" in line) or ("gpu " in line and "procs" in line) for line in lines)
    as_json = subprocess.run([*cli, "--json"], capture_output=True, text=True, timeout=60, cwd=ROOT)
    records = [json.loads(line) for line in as_json.stdout.splitlines()]
    assert len(records) == 2 and records[0]["mem"]["available"] > 0 and records[0]["level"] in ("ok", "warn")
    bad = subprocess.run([*cli, "--floors", "1,2,3"], capture_output=True, text=True, timeout=60, cwd=ROOT)
    assert bad.returncode == 2 and "warn_gib > abort_gib > kill_gib" in bad.stderr


async def test_the_guard_kill_path_for_containers_checks_the_run_label(
    docker_engine, busybox_image: str, started_processes: list[subprocess.Popen]
) -> None:
    """A container labelled with the run is stopped; one labelled with another run is left running."""
    from runners.host.docker_api import DockerClient
    from tests.docker_env import remove_labelled

    async with DockerClient(docker_engine.socket) as client:
        await client.connect()
        ids = {}
        for run_id in ("guard-run-a", "guard-run-b"):
            config = {"Image": busybox_image, "Cmd": ["sleep", "300"], "Labels": {"gb10.run-id": run_id}}
            ids[run_id] = await client.create(f"{run_id}-{os.getpid()}", config)
            await client.start(ids[run_id])
        try:
            socket = str(docker_engine.socket)
            mine = TargetRef("docker", "a", "primary", container=ids["guard-run-a"], socket=socket)
            other = TargetRef("docker", "a", "primary", container=ids["guard-run-b"], socket=socket)
            assert (await end_target(other, "guard-run-a", kill=True)).startswith("left: container")
            assert (await end_target(mine, "guard-run-a", kill=True)).startswith("killed container")
            assert (await client.inspect(ids["guard-run-a"]))["State"]["Running"] is False
            assert (await client.inspect(ids["guard-run-b"]))["State"]["Running"] is True
        finally:
            for run_id in ids:
                remove_labelled(docker_engine, f"gb10.run-id={run_id}")


@pytest.mark.serial  # floors set from the host's real MemAvailable
def test_memory_abort_stops_the_step_and_the_next_arm_waits_for_recovery(tmp_path: Path) -> None:
    """A hog beside the target crosses ABORT: the step fails naming the watchdog, the target is stopped,
    the next arm starts only once memory is back above WARN, and then runs normally."""
    available = read_meminfo().available
    assert available is not None
    top = to_gib(available)
    plan = write_plan(tmp_path, requests=60, concurrency=2, max_tokens=64)  # ~16 s steps; the hog crosses ABORT ~2 s in
    plan.write_text(
        plan.read_text()
        + f"\n[watchdog]\nwarn_gib = {top - 2.5:.2f}\nabort_gib = {top - 3.5:.2f}\nkill_gib = {top - 12:.2f}\n"
        "predict_horizon_s = 0.01\nrestart_wait_s = 60\n"
    )
    out = tmp_path / "run"
    runner = subprocess.Popen(
        [sys.executable, "-m", "console.cli", "run", str(plan), "--headless", "--out", str(out)],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    hog = None
    try:

        def step_started() -> bool:
            path = out / "events.jsonl"
            return path.exists() and any(e["type"] == "step_started" for e in read_jsonl(path))

        assert wait_until(lambda: step_started() or runner.poll() is not None, 120)
        hog = subprocess.Popen(
            [sys.executable, "-m", "runners.testbed.memhog", "--rate-gib-s", "2", "--max-gib", "5", "--hold-s", "4"],
            cwd=ROOT, stdout=subprocess.DEVNULL,
        )  # fmt: skip
        output, _ = runner.communicate(timeout=240)
    finally:
        for proc in (runner, hog):
            if proc is not None and proc.poll() is None:
                proc.kill()
                proc.wait(10)
    assert runner.returncode == 1, output
    evs = read_jsonl(out / "events.jsonl")
    types = [e["type"] for e in evs]
    assert any(e["type"] == "watchdog_action" and e["action"] == "abort" for e in evs)
    failed = [e for e in evs if e["type"] == "step_failed"]
    assert [e["step"]["arm"] for e in failed] == ["split1"] and "memory watchdog ABORT" in failed[0]["reason"]
    assert "restart_blocked" in types and "restart_allowed" in types
    assert types.index("restart_blocked") < types.index("restart_allowed")
    finished = [e for e in evs if e["type"] == "step_finished"]
    assert [e["step"]["arm"] for e in finished] == ["split8"]
    assert not any(e["type"] == "guard_ended_target" for e in evs)  # ABORT is the runner's to act on
