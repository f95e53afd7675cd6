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

from runners.host.owner import process_start_ticks
from runners.run.files import read_json, read_jsonl
from runners.run.rundir import RunDir
from runners.run.targets import TargetRef, write_targets
from runners.watchdog.heartbeat import Heartbeat
from tests.support.fake_host import make_guard, set_available
from tests.support.processes import labelled_sleeper
from tests.support.waits import until

pytestmark = pytest.mark.serial  # the guard loop's reaction and heartbeat bounds (0.1-1.5 s)


def labelled_target(run: RunDir, owner: list[subprocess.Popen]) -> subprocess.Popen:
    """A process labelled as `run`'s serve target and listed in its targets.json."""
    target = labelled_sleeper(run.info()["run_id"], owner)
    write_targets(
        run, [TargetRef("process", "a", "primary", pid=target.pid, start_ticks=process_start_ticks(target.pid))]
    )
    return target


async def test_a_kill_floor_crossing_kills_the_labelled_target_within_a_poll(
    tmp_path: Path, started_processes: list[subprocess.Popen]
) -> None:
    """MemAvailable 20 → 5 GiB: the target is SIGKILLed at once; events and status carry the numbers."""
    proc = tmp_path / "proc"
    proc.mkdir()
    set_available(proc, 20)
    guard = make_guard(tmp_path, proc)
    target = labelled_target(guard.run_dir, started_processes)
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


async def test_a_failing_status_write_does_not_stop_the_guard(
    tmp_path: Path, started_processes: list[subprocess.Popen]
) -> None:
    """watchdog.json cannot be written (a directory is in the way): the loop still beats and still kills."""
    proc = tmp_path / "proc"
    proc.mkdir()
    set_available(proc, 20)
    guard = make_guard(tmp_path, proc)
    guard.run_dir.watchdog_json.mkdir()
    target = labelled_target(guard.run_dir, started_processes)
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
