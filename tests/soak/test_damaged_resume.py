"""Resuming damaged run directories for real: runner sessions (with their guard process) against a loopback mock
server, run directories cut and garbled the way crashes, full disks and stray edits leave them.

The fuzz test cuts events.jsonl and requests.jsonl of an interrupted run at seeded random byte offsets,
resumes each copy, and checks that every line of every JSONL file parses with a strict parser and that the
run finishes.
"""

from __future__ import annotations

import asyncio
import json
import random
import shutil
import sys
from pathlib import Path

import pytest

from runners.plan.steps import StepKey
from runners.report.summary import write_report
from runners.run.control import request_abort
from runners.run.event_log import INCOMPLETE, read_event_log, status_label
from runners.run.files import read_json, read_jsonl, torn_records
from runners.run.run_index import list_runs
from runners.run.rundir import RunDir
from runners.run.runs import create_run
from runners.soak.execute import execute
from runners.testbed.mock_server import MockSettings
from tests.support.mock import StartMock
from tests.support.plans import Plan, sharegpt_phase
from tests.support.project import ROOT

pytestmark = pytest.mark.slow
SESSION_DEADLINE_S = 60.0
FUZZ_CUTS = 10
FUZZ_SEED = 21
FIRST = StepKey("a", "primary", "replay", 0)


def _plan(tmp_path: Path, url: str) -> Path:
    serve = {"kind": "external", "url": url, "ready_timeout_s": 10}
    phase = sharegpt_phase(requests=4, concurrency=2, max_tokens=8, http_timeout_s=10)
    return Plan("durable", serve, [{"name": "a"}, {"name": "b"}], [phase]).write(tmp_path)


async def _session(run: RunDir, listeners=()):
    return await asyncio.wait_for(execute(run, listeners), SESSION_DEADLINE_S)


async def _interrupted(tmp_path: Path, start_mock: StartMock) -> RunDir:
    """A run aborted after its first step: arm a DONE, arm b to do."""
    url = await start_mock(MockSettings(ttft_ms=5, itl_ms=2, tokens=8))
    run = create_run(_plan(tmp_path, url), tmp_path / "run", tmp_path)

    def abort_after_first_step(event: dict) -> None:
        if event["type"] == "step_finished":
            request_abort(run, "test: stop after the first step", by="test")

    assert (await _session(run, [abort_after_first_step])).status == "aborted"
    return run


def strict_jsonl(root: Path) -> dict[str, int]:
    """Every line of every JSONL file under `root` parsed with json.loads; lines per file."""
    counts = {}
    for path in sorted(root.rglob("*.jsonl")):
        data = path.read_bytes()
        assert not data or data.endswith(b"\n"), f"{path} ends in a line without its newline"
        counts[str(path.relative_to(root))] = len([json.loads(line) for line in data.split(b"\n")[:-1]])
    return counts


def _repairs(run: RunDir) -> list[dict]:
    return [e for e in read_jsonl(run.events) if e["type"] == "run_dir_repaired"]


async def test_resume_after_a_torn_last_event_starts_a_fresh_line_and_records_the_fragment(
    tmp_path: Path, start_mock: StartMock
) -> None:
    run = await _interrupted(tmp_path, start_mock)
    data = run.events.read_bytes()
    cut = data.rindex(b'"type":"') + 12  # inside the last event's type, as a SIGKILL mid-write leaves it
    run.events.write_bytes(data[:cut])
    assert (await _session(run)).status == "finished"
    strict_jsonl(run.root)
    [repair] = _repairs(run)
    offset = data.rindex(b"\n", 0, cut) + 1
    assert (repair["file"], repair["action"]) == ("events.jsonl", "torn_line_set_aside")
    assert f"from byte {offset}" in repair["detail"] and "events.jsonl.torn" in repair["detail"]
    assert [(r["offset"], r["text"]) for r in torn_records(run.events)] == [(offset, data[offset:cut].decode())]
    assert "torn line(s) were set aside from events.jsonl" in (run.root / "summary.md").read_text()
    [skipped] = [e for e in read_jsonl(run.events) if e["type"] == "step_skipped"]
    own = read_json(run.step_dir(FIRST) / "phase.json")  # the DONE step's own times, not the resume's
    assert (skipped["started_at"], skipped["ended_at"]) == (own["started_at"], own["ended_at"])


async def test_fuzz_cut_jsonl_files_at_random_offsets_then_resume_and_every_line_parses(
    tmp_path: Path, start_mock: StartMock
) -> None:
    template = await _interrupted(tmp_path, start_mock)
    rng = random.Random(FUZZ_SEED)
    for i in range(FUZZ_CUTS):
        root = tmp_path / f"cut-{i}"
        shutil.copytree(template.root, root)
        run = RunDir(root)
        victim = run.events if i % 2 == 0 else run.step_dir(FIRST) / "requests.jsonl"
        data = victim.read_bytes()
        offset = rng.randrange(1, len(data))
        victim.write_bytes(data[:offset])
        result = await _session(run)
        assert result.status == "finished", f"cut {victim} at {offset}: {result.reason}"
        lines = strict_jsonl(root)
        torn = data[offset - 1 : offset] != b"\n"
        assert bool(torn_records(victim)) == torn, f"cut {victim} at {offset}"
        if victim.name == "requests.jsonl":  # arm a's step is DONE: kept as cut, short of the 4 requests
            assert lines["arms/a/primary/replay/0/requests.jsonl"] == data[:offset].count(b"\n")
        assert read_json(run.state_json)["status"] == "finished"


async def test_garbage_state_json_is_rebuilt_from_the_events_on_resume_and_the_copy_kept(
    tmp_path: Path, start_mock: StartMock
) -> None:
    run = await _interrupted(tmp_path, start_mock)
    started = read_json(run.state_json)["started_at"]
    run.state_json.write_bytes(b'{"run_id": "durable-2026')
    assert (await _session(run)).status == "finished"
    [repair] = _repairs(run)
    assert (repair["file"], repair["action"]) == ("state.json", "state_rebuilt")
    assert "1 of 2 steps DONE, last session aborted" in repair["detail"] and "state.json.damaged" in repair["detail"]
    assert (run.root / "state.json.damaged").read_bytes() == b'{"run_id": "durable-2026'
    state = read_json(run.state_json)
    assert (state["status"], state["steps_done"]) == ("finished", 2)
    assert state["started_at"] == pytest.approx(started, abs=1.0)  # the first run_started, just after the state


async def test_half_an_event_log_reads_incomplete_and_the_report_says_so(tmp_path: Path, start_mock: StartMock) -> None:
    run = await _interrupted(tmp_path, start_mock)
    assert (await _session(run)).status == "finished"
    lines = run.events.read_bytes().splitlines(keepends=True)
    run.events.write_bytes(b"".join(lines[: len(lines) // 2]))  # whole lines: nothing torn, the end is gone
    assert read_json(run.state_json)["status"] == "finished"  # what state.json still says
    assert status_label(run) == INCOMPLETE
    assert [e.status for e in list_runs(tmp_path)] == [INCOMPLETE]
    assert not read_event_log(run).complete
    write_report(run.root)
    summary = (run.root / "summary.md").read_text()
    assert f"Status: **{INCOMPLETE}**" in summary
    assert "the event log (events.jsonl) is incomplete" in summary and "no incident recorded" not in summary
    assert read_json(run.summary_json)["status"] == INCOMPLETE


async def test_resuming_a_finished_run_changes_nothing_and_says_there_is_nothing_to_do(
    tmp_path: Path, start_mock: StartMock
) -> None:
    run = await _interrupted(tmp_path, start_mock)
    assert (await _session(run)).status == "finished"
    kept = ["events.jsonl", "state.json", "provenance.json", "summary.md", "summary.json", "watchdog.jsonl"]
    before = {name: (run.root / name).read_bytes() for name in kept}
    walls = {arm: read_json(run.step_dir(StepKey(arm, "primary", "replay", 0)) / "phase.json")["stats"]["wall_s"]
             for arm in ("a", "b")}  # fmt: skip
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "console.cli", "run", "--resume", str(run.root), "--headless",
        cwd=ROOT, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    out, err = await asyncio.wait_for(proc.communicate(), SESSION_DEADLINE_S)
    assert proc.returncode == 0, out.decode() + err.decode()
    assert "nothing to do: all 2 steps are DONE and the run finished at" in out.decode()
    assert {name: (run.root / name).read_bytes() for name in kept} == before
    assert walls == {arm: read_json(run.step_dir(StepKey(arm, "primary", "replay", 0)) / "phase.json")["stats"]
                     ["wall_s"] for arm in ("a", "b")}  # fmt: skip
