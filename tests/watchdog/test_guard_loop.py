"""The guard's loop in-process, with a fake /proc/meminfo the test moves and a real labelled target.

Deterministic memory makes the decisions exact: a KILL kills within a poll, a failing write does not
stop the loop, and heartbeats are judged by when they changed.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest

from engine.units import GIB
from runners.host.owner import RUN_ID_VAR, process_start_ticks
from runners.plan.load import load_plan
from runners.plan.sections import WatchdogSpec
from runners.run.files import read_json, read_jsonl
from runners.run.rundir import RunDir, create_run_dir
from runners.run.targets import TargetRef, write_targets
from runners.watchdog.guard import Guard, RunnerWatch
from runners.watchdog.heartbeat import Heartbeat
from runners.watchdog.samplers import GpuSample, Sampler
from tests.conftest import write_plan

SPEC = WatchdogSpec(warn_gib=10, abort_gib=8, kill_gib=6)


class NoGpu:
    """Stands in for NvmlSampler: no GPU here."""

    def sample(self, host_mem_total: int | None) -> GpuSample:
        """Always N/A."""
        return GpuSample.unavailable("test: no GPU")


def set_available(proc: Path, gib: float) -> None:
    """Write a /proc/meminfo with MemAvailable = `gib`."""
    (proc / "meminfo").write_text(f"MemTotal: {32 * GIB // 1024} kB\nMemAvailable: {int(gib * GIB) // 1024} kB\n")


def make_guard(tmp_path: Path, proc: Path) -> Guard:
    plan = write_plan(tmp_path)
    loaded = load_plan(plan)
    run = create_run_dir(tmp_path / "run", tmp_path, loaded.source, loaded.plan.name, loaded.base_dir)
    run.runner_heartbeat.touch()
    runner = RunnerWatch(os.getpid(), process_start_ticks(os.getpid()), Heartbeat(run.runner_heartbeat))
    return Guard(run, SPEC, runner, Sampler(proc=proc, nvml=NoGpu()))  # type: ignore[arg-type]


def labelled_target(run: RunDir, procs: list[subprocess.Popen]) -> subprocess.Popen:
    target = subprocess.Popen(
        ["sleep", "300"], env={**os.environ, RUN_ID_VAR: run.info()["run_id"]}, start_new_session=True
    )
    procs.append(target)
    write_targets(
        run, [TargetRef("process", "a", "primary", pid=target.pid, start_ticks=process_start_ticks(target.pid))]
    )
    return target


@pytest.fixture
def procs():
    """Targets a test starts; killed afterwards."""
    started: list[subprocess.Popen] = []
    yield started
    for p in started:
        if p.poll() is None:
            p.kill()
            p.wait(5)


async def until(predicate, deadline_s: float) -> bool:
    """Poll without blocking the loop the guard runs on."""
    end = time.monotonic() + deadline_s
    while time.monotonic() < end:
        if predicate():
            return True
        await asyncio.sleep(0.02)
    return bool(predicate())


async def test_a_kill_floor_crossing_kills_the_labelled_target_within_a_poll(tmp_path: Path, procs) -> None:
    """MemAvailable 20 → 5 GiB: the target is SIGKILLed at once; events and status carry the numbers."""
    proc = tmp_path / "proc"
    proc.mkdir()
    set_available(proc, 20)
    guard = make_guard(tmp_path, proc)
    target = labelled_target(guard.run_dir, procs)
    stop = asyncio.Event()
    loop = asyncio.create_task(guard.run(stop))
    try:
        assert await until(lambda: bool(guard._verified), 5), "the guard did not check the target's label"
        set_available(proc, 5)
        crossed = time.monotonic()
        assert await until(lambda: target.poll() is not None, 3)
        assert time.monotonic() - crossed < 1.5  # the loop polls every 1 s at most; near the floor 0.1 s
        assert target.returncode == -signal.SIGKILL
        assert await until(lambda: (read_json(guard.run_dir.watchdog_json) or {}).get("last_kill"), 3)
    finally:
        stop.set()
        await asyncio.wait_for(loop, 10)
    events = read_jsonl(guard.run_dir.events)
    ended = [e for e in events if e["type"] == "guard_ended_target"]
    assert len(ended) == 1 and ended[0]["kill"] is True and ended[0]["available_gib"] == pytest.approx(5.0)
    assert "MemAvailable 5.0 GiB < KILL floor 6.0 GiB" in ended[0]["cause"]
    levels = [e["level"] for e in events if e["type"] == "watchdog_level"]
    assert levels == ["kill"]
    status = read_json(guard.run_dir.watchdog_json)
    assert status["level"] == "kill" and status["last_kill"]["arm"] == "a" and status["restart_allowed"] is False
    assert {r["level"] for r in read_jsonl(guard.run_dir.watchdog_jsonl)} >= {"ok", "kill"}


async def test_a_failing_status_write_does_not_stop_the_guard(tmp_path: Path, procs) -> None:
    """watchdog.json cannot be written (a directory is in the way): the loop still beats and still kills."""
    proc = tmp_path / "proc"
    proc.mkdir()
    set_available(proc, 20)
    guard = make_guard(tmp_path, proc)
    guard.run_dir.watchdog_json.mkdir()
    target = labelled_target(guard.run_dir, procs)
    stop = asyncio.Event()
    loop = asyncio.create_task(guard.run(stop))
    try:
        assert await until(lambda: bool(guard._verified), 5)
        beat = guard.run_dir.guard_heartbeat.stat().st_mtime
        set_available(proc, 5)
        assert await until(lambda: target.poll() is not None, 3)
        assert await until(lambda: guard.run_dir.guard_heartbeat.stat().st_mtime > beat, 3)
        assert not loop.done()
    finally:
        stop.set()
        await asyncio.wait_for(loop, 10)


def test_a_heartbeat_is_silence_since_the_file_last_changed(tmp_path: Path) -> None:
    """Silence counts from when the watcher saw the mtime change, not from the mtime's wall-clock value."""
    path = tmp_path / "beat"
    path.touch()
    os.utime(path, (1.0, 1.0))  # a wall-clock time far in the past: not silence by itself
    beat = Heartbeat(path)
    assert beat.silent_for() < 0.5
    time.sleep(0.3)
    assert beat.silent_for() >= 0.3
    path.touch()
    assert beat.silent_for() < 0.1
    path.unlink()
    time.sleep(0.2)
    assert beat.silent_for() >= 0.2  # a missing file is silence, counted from the last change
