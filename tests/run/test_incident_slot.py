"""incident.slot: allocated once, written in place (never grown), read back, blanked; and what the run's status
and the console say of a runner that stopped because its run directory could not be written."""

from __future__ import annotations

from pathlib import Path

from console.views.run_view import RunView
from runners.plan.load import load_plan
from runners.run.event_log import DISK_STOPPED, INTERRUPTED, status_label
from runners.run.incident_slot import (
    SLOT_BYTES,
    SLOT_NAME,
    clear_incident,
    incident_text,
    prepare_slot,
    read_incident,
    record_incident,
)
from runners.run.rundir import RunDir, RunState
from runners.run.runs import create_run
from tests.support.plans import write_plan

STEP = {"arm": "split1", "mode": "primary", "phase": "replay", "rep": 0}


def _run(tmp_path: Path) -> RunDir:
    return create_run(write_plan(tmp_path), tmp_path / "run", tmp_path)


def test_the_slot_is_allocated_once_written_in_place_and_blanked(tmp_path: Path) -> None:
    run = _run(tmp_path)
    slot = run.root / SLOT_NAME
    assert not record_incident(run, "x", None)  # no slot allocated: nothing is grown on a full disk
    prepare_slot(run)
    assert slot.stat().st_size == SLOT_BYTES and read_incident(run) is None
    inode = slot.stat().st_ino
    assert record_incident(run, "[Errno 28] No space left on device: 'state.json'" + "!" * 5000, STEP)
    assert slot.stat().st_size == SLOT_BYTES and slot.stat().st_ino == inode  # in place
    incident = read_incident(run)
    assert incident is not None and incident["step"] == STEP and incident["reason"].startswith("[Errno 28]")
    assert incident_text(incident).startswith("the run directory could not be written during split1/primary/replay/0")
    prepare_slot(run)  # a new session's allocation keeps what is there until it is carried
    assert read_incident(run) is not None
    clear_incident(run)
    assert read_incident(run) is None and slot.stat().st_size == SLOT_BYTES


def test_a_runner_that_could_not_write_its_end_reads_as_stopped_by_the_disk_not_interrupted(tmp_path: Path) -> None:
    run = _run(tmp_path)
    run.write_state(RunState(run_id=run.info()["run_id"], plan="mini", status="running", runner_pid=1))
    assert status_label(run, live=False) == INTERRUPTED
    prepare_slot(run)
    record_incident(run, "[Errno 28] No space left on device", STEP)
    assert status_label(run, live=False) == DISK_STOPPED
    view = RunView.for_plan(load_plan(run.plan_toml).plan, run.info()["run_id"])
    view.status, view.runner_pid = "running", 4242
    line = view.runner_gone(incident_text(read_incident(run) or {}))
    assert line is not None and line.startswith("runner stopped (pid 4242): the run directory could not be written")
    assert "No space left on device" in line and "without run_finished" not in line
