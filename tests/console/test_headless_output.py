"""`run --headless` outlives its output: a pipe closed by its reader (`| head -2`) and a terminal that hangs up
(an ssh session that goes away: SIGHUP, then EIO on every write) leave the soak running to its end."""

from __future__ import annotations

import fcntl
import os
import select
import signal
import subprocess
import sys
import termios
import time
from pathlib import Path

import pytest

from runners.run.files import read_jsonl
from runners.run.rundir import RunDir
from tests.support.plans import write_plan
from tests.support.project import ROOT

pytestmark = pytest.mark.slow

SOAK_DEADLINE_S = 120.0


def _argv(plan: Path, out: Path) -> list[str]:
    return [sys.executable, "-m", "console.cli", "run", str(plan), "--headless", "--out", str(out)]


def _finished(out: Path) -> None:
    """The soak ran to its end: run_finished written, state.json finished."""
    ends = [e for e in read_jsonl(out / "events.jsonl") if e["type"] == "run_finished"]
    assert [e["status"] for e in ends] == ["finished"], ends
    state = RunDir(out).read_state()
    assert state is not None and state.status == "finished", state


def test_a_reader_that_closes_the_pipe_and_a_sighup_leave_the_soak_running(tmp_path: Path) -> None:
    """`| head -2`, then SIGHUP: exit 0, run_finished, nothing on stderr, and runner.log says what was lost."""
    plan, out = write_plan(tmp_path, requests=3), tmp_path / "run"
    proc = subprocess.Popen(_argv(plan, out), cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        assert proc.stdout is not None and proc.stderr is not None
        first = [proc.stdout.readline() for _ in range(2)]
        assert first[0].startswith(b"run ") and b"run started" in first[1], first
        proc.stdout.close()  # what head does after two lines
        proc.send_signal(signal.SIGHUP)
        code = proc.wait(SOAK_DEADLINE_S)
        errors = proc.stderr.read().decode()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
    assert code == 0 and errors == "", (code, errors)
    _finished(out)
    log = (out / "runner.log").read_text()
    assert "stdout is gone (BrokenPipeError" in log and "SIGHUP: the terminal hung up" in log, log
    assert log.rstrip().endswith("runner: finished: all 2 steps done"), log


def _make_controlling_terminal() -> None:
    """In the child, after setsid: its stdin (the pty) becomes its controlling terminal, as a login shell's."""
    fcntl.ioctl(0, termios.TIOCSCTTY, 0)


def test_a_terminal_that_hangs_up_leaves_the_soak_running(tmp_path: Path) -> None:
    """The soak's controlling terminal goes away after the first lines: the kernel sends SIGHUP and every later
    write fails with EIO; the soak still finishes and exits 0."""
    plan, out = write_plan(tmp_path, requests=3), tmp_path / "run"
    master, slave = os.openpty()
    proc = subprocess.Popen(_argv(plan, out), cwd=ROOT, stdin=slave, stdout=slave, stderr=slave,
                            start_new_session=True, preexec_fn=_make_controlling_terminal)  # fmt: skip
    os.close(slave)
    try:
        seen, end = b"", time.monotonic() + 60
        while b"run started" not in seen and time.monotonic() < end:
            ready, _, _ = select.select([master], [], [], 0.5)
            if ready:
                seen += os.read(master, 4096)
        assert b"run started" in seen, seen
        os.close(master)  # the terminal hangs up
        master = -1
        code = proc.wait(SOAK_DEADLINE_S)
    finally:
        if master >= 0:
            os.close(master)
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
    assert code == 0, (code, (out / "runner.log").read_text() if (out / "runner.log").exists() else "")
    _finished(out)
    log = (out / "runner.log").read_text()
    assert "SIGHUP: the terminal hung up" in log and "is gone (OSError: Input/output error)" in log, log
