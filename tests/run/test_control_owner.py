"""Only the run's owner drives the run: a control file of another uid is never acted on, and is said."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import pytest

from runners.run.control import abort_pending, pause_requested, request_abort, request_pause, watch_control
from runners.run.rundir import RunDir


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
