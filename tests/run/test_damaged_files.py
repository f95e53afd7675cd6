"""Damaged run-directory files, file by file: torn last lines, garbage state.json and run.json, stale locks.

Each case is what a crash, a full disk or a stray edit leaves; each reads as what it is (never "created", never
a traceback) and the next writer neither glues onto it nor loses it.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from runners.evidence.results import load_run_results
from runners.run.event_types import RunStarted
from runners.run.events import EventLog
from runners.run.files import JsonlTail, JsonlWriter, set_aside_torn_tail, torn_records, torn_sidecar
from runners.run.provenance import start_session
from runners.run.run_index import list_runs
from runners.run.rundir import DamagedRunFile, RunDir, RunDirError, RunnerLock, RunState, runner_alive
from runners.run.runs import create_run
from tests.support.plans import write_plan
from tests.support.project import ROOT

HOLD_DEADLINE_S = 30.0


def strict_lines(path: Path) -> list[dict]:
    """Every line of a JSONL file parsed by a strict parser; the file ends in a newline."""
    data = path.read_bytes()
    assert not data or data.endswith(b"\n"), f"{path} ends in a line without its newline"
    return [json.loads(line) for line in data.split(b"\n")[:-1]]


@pytest.mark.foreign_events  # plain lines and a fragment of one: the file layer knows nothing of event types
def test_an_appender_after_a_torn_last_line_starts_a_fresh_line_and_keeps_the_fragment(tmp_path: Path) -> None:
    path = tmp_path / "requests.jsonl"
    path.write_bytes(b'{"i": 0}\n{"i": 1}\n{"v":1,"t":17.5,"type":"guar')
    with JsonlWriter(path) as writer:
        assert writer.torn is not None and writer.torn.offset == 18 and writer.torn.length == 28
        writer.append({"i": 2})
    assert strict_lines(path) == [{"i": 0}, {"i": 1}, {"i": 2}]
    [kept] = torn_records(path)
    assert (kept["offset"], kept["length"], kept["text"]) == (18, 28, '{"v":1,"t":17.5,"type":"guar')
    assert torn_sidecar(path).name == "requests.jsonl.torn"
    assert set_aside_torn_tail(path) is None  # whole lines: nothing to do


def test_the_event_log_resumes_on_a_fresh_line_after_a_torn_event(tmp_path: Path) -> None:
    """The issue's case: the new session's first event glued onto `..."type":"guar`."""
    path = tmp_path / "events.jsonl"
    first = EventLog(path)
    first.emit(RunStarted("r", "p", 1, ["a"], [], 0))
    first.close()
    with open(path, "ab") as fh:
        fh.write(b'{"v":1,"t":1.0,"type":"guar')  # a write cut off by a SIGKILL or a full disk
    second = EventLog(path)
    second.emit(RunStarted("r", "p", 2, ["a"], [], 0))
    second.close()
    assert [e["pid"] for e in strict_lines(path)] == [1, 2]
    assert torn_records(path)[0]["text"] == '{"v":1,"t":1.0,"type":"guar'


@pytest.mark.foreign_events
def test_a_tail_holding_the_fragment_skips_it_once_it_is_set_aside_and_the_file_grows_past_it(tmp_path: Path) -> None:
    path = tmp_path / "events.jsonl"
    path.write_bytes(b'{"a": 1}\n{"b": 2, "partial')
    tail = JsonlTail(path)
    assert tail.read_new() == [{"a": 1}] and tail.pending == b'{"b": 2, "partial'
    with JsonlWriter(path) as writer:  # sets the fragment aside, then grows the file past where the tail stood
        for i in range(3):
            writer.append({"c": i})
    assert tail.read_new() == [{"c": 0}, {"c": 1}, {"c": 2}]
    assert tail.bad_lines == 0


GARBAGE_STATES = [
    b"",
    b'{"run_id": "r", "plan": "p", "status": "runn',
    b"\x00\xff\xfe",
    b"null",
    b"[]",
    b'{"plan": "p"}',
    b'{"run_id": "r", "plan": "p", "status": "exploded"}',
    b'{"run_id": "r", "plan": "p", "steps_done": "2"}',
]


@pytest.mark.parametrize("garbage", GARBAGE_STATES)
def test_a_garbage_state_json_reads_damaged_everywhere_never_created(tmp_path: Path, garbage: bytes) -> None:
    runs = tmp_path / "runs"
    run = create_run(write_plan(tmp_path), runs / "r1", runs)
    run.state_json.write_bytes(garbage)
    state = run.read_state()
    assert state is not None and state.label() == "damaged"
    assert str(run.state_json) in state.reason and f"gb10-console run --resume {run.root}" in state.reason
    assert [e.status for e in list_runs(runs)] == ["damaged"]
    results = load_run_results(run.root)
    assert results.status == "damaged"
    assert any("state.json is damaged" in note for note in results.limitations)


@pytest.mark.parametrize("garbage", [b"", b'{"run_id": "r", "pl', b"[1, 2]", b'{"run_id": "r"}'])
def test_a_garbage_run_json_says_what_it_held_and_what_to_do(tmp_path: Path, garbage: bytes) -> None:
    run = create_run(write_plan(tmp_path), tmp_path / "run", tmp_path)
    run_id = run.info()["run_id"]
    start_session(run, ["test"])  # provenance.json: the run id and where the plan came from
    run.run_json.write_bytes(garbage)
    with pytest.raises(DamagedRunFile) as caught:
        run.plan_dir()  # reads run.info() first
    message = str(caught.value)
    assert f"{run.run_json} is damaged" in message and "not rebuilt automatically" in message
    guess = json.loads(message[message.index("{") :])
    assert guess["run_id"] == run_id and guess["plan_dir"] == str(tmp_path) and guess["plan"] == "mini"
    assert [e.status for e in list_runs(tmp_path)] == ["damaged (run.json)"]


def test_resuming_a_run_whose_run_json_is_garbage_is_one_clear_error_not_a_traceback(tmp_path: Path) -> None:
    run = create_run(write_plan(tmp_path), tmp_path / "run", tmp_path)
    run.run_json.write_text('{"run_id": "mini-2')
    cli = subprocess.run(
        [sys.executable, "-m", "console.cli", "run", "--resume", str(run.root), "--headless"],
        capture_output=True, text=True, timeout=60, cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)},
    )  # fmt: skip
    assert cli.returncode == 2, cli.stdout + cli.stderr
    assert "Traceback" not in cli.stderr and f"error: {run.run_json} is damaged (not valid JSON" in cli.stderr
    assert "Restore it from a backup; the run cannot be resumed or reported without it" in cli.stderr


def _dead_pid() -> int:
    proc = subprocess.Popen(["true"])
    proc.wait(10)
    return proc.pid


def _hold(lock: Path, code: str) -> subprocess.Popen:
    """A process that runs `code` (which takes the lock at `lock`), says `held` and sleeps; the caller kills it."""
    proc = subprocess.Popen(
        [sys.executable, "-c", f"{code}\nprint('held', flush=True)\nimport time; time.sleep({HOLD_DEADLINE_S})",
         str(lock)],
        stdout=subprocess.PIPE, text=True, cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)},
    )  # fmt: skip
    assert proc.stdout is not None and proc.stdout.readline().strip() == "held"
    return proc


def test_the_refusal_names_the_live_runner_holding_the_lock_not_a_stale_state_pid(tmp_path: Path) -> None:
    """state.json still names the last session's runner (dead) while a new runner holds the lock."""
    run = RunDir(tmp_path)
    dead = _dead_pid()
    run.write_state(RunState(run_id="r", plan="p", status="aborted", runner_pid=dead))
    code = "import sys; from pathlib import Path; from runners.run.rundir import RunDir, RunnerLock\n"
    code += "RunnerLock(RunDir(Path(sys.argv[1]).parent)).acquire()"
    holder = _hold(run.lock_path, code)
    try:
        assert runner_alive(run)
        with pytest.raises(RunDirError, match=rf"another runner \(pid {holder.pid}\)"):
            RunnerLock(run).acquire()
    finally:
        holder.kill()
        holder.wait(10)


def test_a_lock_held_by_a_process_that_is_not_a_live_runner_is_taken_over_with_a_notice(tmp_path: Path) -> None:
    """A descendant that inherited the lock's descriptor outlives its runner: the pid the lock names is dead."""
    run = RunDir(tmp_path)
    dead = _dead_pid()
    run.lock_path.write_text(f"{dead}\n")  # as the runner wrote it, before it died
    code = "import fcntl, os, sys\nfd = os.open(sys.argv[1], os.O_RDWR)\nfcntl.flock(fd, fcntl.LOCK_EX)"
    orphan = _hold(run.lock_path, code)
    try:
        assert not runner_alive(run)
        lock = RunnerLock(run)
        lock.acquire()
        assert lock.took_over is not None and f"pid {dead}, no longer running" in lock.took_over
        assert runner_alive(run)
        assert json.loads(run.lock_path.read_text())["pid"] == os.getpid()
        with pytest.raises(RunDirError, match=rf"another runner \(pid {os.getpid()}\)"):
            RunnerLock(run).acquire()  # and now a live runner holds it: refused
        lock.release()
    finally:
        orphan.kill()
        orphan.wait(10)
