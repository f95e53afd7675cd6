"""Only the run's owner drives the run: a control file of another uid is never acted on, and is said."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from pathlib import Path

import pytest

from runners.run.control import abort_pending, pause_requested, request_abort, request_pause, watch_control
from runners.run.files import read_jsonl
from runners.run.rundir import RunDir
from tests.support.events import first_event
from tests.support.plans import write_plan
from tests.support.project import ROOT
from tests.support.waits import wait_until


async def watch_briefly(run: RunDir) -> tuple[list[dict], list[dict | None], list[str]]:
    aborts: list[dict] = []
    pauses: list[dict | None] = []
    refused: list[str] = []
    task = asyncio.create_task(watch_control(run, aborts.append, pauses.append, refused.append))
    await asyncio.sleep(0.5)
    task.cancel()
    return aborts, pauses, refused


async def test_a_control_file_of_another_uid_is_ignored_and_said(tmp_path: Path) -> None:
    if os.getuid() != 0:
        pytest.skip("needs root to make a file owned by another uid (chown to 65534)")
    run = RunDir(tmp_path)
    request_abort(run, "from someone else", "intruder")
    request_pause(run, "intruder")
    for name in ("abort.json", "pause.json"):
        os.chown(run.control_dir / name, 65534, 65534)
    assert not abort_pending(run) and pause_requested(run) is None
    aborts, pauses, refused = await watch_briefly(run)
    assert aborts == [] and set(pauses) == {None}
    assert refused == [
        "ignored control/abort.json: written by uid 65534, not by the run's owner (uid 0)",
        "ignored control/pause.json: written by uid 65534, not by the run's owner (uid 0)",
    ]
    assert list(run.control_dir.iterdir()) == []


async def test_the_owners_control_file_is_acted_on(tmp_path: Path) -> None:
    run = RunDir(tmp_path)
    request_abort(run, "enough", "operator")
    request_pause(run, "operator")
    aborts, pauses, refused = await watch_briefly(run)
    assert [a["reason"] for a in aborts] == ["enough"] and pauses[-1]["by"] == "operator" and refused == []


def test_a_live_runner_refuses_another_uids_abort_records_it_and_finishes(tmp_path: Path) -> None:
    """The runner's own watcher: the foreign abort is removed unread, `control_refused` is in events.jsonl, the run
    finishes (exit 0) rather than aborting."""
    if os.getuid() != 0:
        pytest.skip("needs root to make a file owned by another uid (chown to 65534)")
    out = tmp_path / "run"
    plan = write_plan(tmp_path, requests=24, concurrency=2, max_tokens=24)
    runner = subprocess.Popen([sys.executable, "-m", "console.cli", "run", str(plan), "--headless", "--out", str(out)],
                              cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)  # fmt: skip
    try:
        assert wait_until(lambda: first_event(out, "step_started") is not None or runner.poll() is not None, 90, 0.1)
        run = RunDir(out)
        request_abort(run, "from someone else", "intruder")
        os.chown(run.control_dir / "abort.json", 65534, 65534)
        output, _ = runner.communicate(timeout=180)
    finally:
        if runner.poll() is None:
            runner.kill()
            runner.wait(10)
    assert runner.returncode == 0, output[-3000:]
    refused = [e for e in read_jsonl(out / "events.jsonl") if e["type"] == "control_refused"]
    assert refused and "ignored control/abort.json: written by uid 65534" in refused[0]["detail"], refused
    assert not [e for e in read_jsonl(out / "events.jsonl") if e["type"] == "abort_requested"]
