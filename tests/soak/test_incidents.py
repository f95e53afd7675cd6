"""Incidents rehearsed for real: the engine started with test faults, a real runner, a real guard.

Each one must end with a clear reason in the run directory, the target stopped, and the run
resumable; none may hang the runner.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from engine.units import GIB
from runners.host.meminfo import read_meminfo
from runners.run.files import read_json, read_jsonl
from runners.run.incident_slot import read_incident
from runners.run.rundir import RunDir
from runners.run.runs import create_run
from tests.support.plans import fault_plan, phases_toml, profiled_phase, small_phase, write_plan
from tests.support.processes import pid_gone, run_headless
from tests.support.project import ROOT
from tests.support.waits import wait_until

pytestmark = pytest.mark.slow


PHASE = """
[[phases]]
name = "replay"
kind = "sharegpt"
requests = 4
concurrency = 2
max_tokens = 16
http_timeout_s = 2
deadline_s = 60
stall_s = 30
"""


def _served_pids(out: Path) -> list[int]:
    return [e["target"]["pid"] for e in read_jsonl(out / "events.jsonl") if e["type"] == "serve_stopped"]


def test_a_stream_that_stalls_mid_response_times_out_and_the_runner_reports_it(tmp_path: Path) -> None:
    """stream_stall: every request stops after 3 tokens; each hits its 2 s deadline; the step fails, clearly."""
    out = tmp_path / "run"
    started = time.monotonic()
    result = run_headless(fault_plan(tmp_path, ["stream_stall=3"], PHASE), out)
    assert result.returncode == 1, result.stdout + result.stderr
    assert time.monotonic() - started < 120
    records = read_jsonl(out / "arms" / "split4" / "primary" / "replay" / "0" / "requests.jsonl")
    assert len(records) == 4 and all(r["status"] != "ok" for r in records)
    assert all(r["output_tokens"] == 3 or len(r.get("chunk_ns", [])) >= 3 for r in records)
    failed = [e for e in read_jsonl(out / "events.jsonl") if e["type"] == "step_failed"]
    assert failed and "no request succeeded" in failed[0]["reason"] and "2" in failed[0]["reason"]
    state = read_json(out / "state.json")
    assert state["status"] == "failed" and state["resumable"] is True
    assert all(pid_gone(pid) for pid in _served_pids(out))


def test_a_zombie_engine_is_never_called_ready(tmp_path: Path) -> None:
    """zombie: /health answers but POSTs hang; readiness fails by its deadline, naming the completion."""
    out = tmp_path / "run"
    started = time.monotonic()
    result = run_headless(fault_plan(tmp_path, ["zombie"], PHASE, ready_timeout_s=6), out)
    assert result.returncode == 1, result.stdout + result.stderr
    assert time.monotonic() - started < 90
    events = read_jsonl(out / "events.jsonl")
    serve_failed = [e for e in events if e["type"] == "serve_failed"]
    assert serve_failed and "not ready after 6 s" in serve_failed[0]["reason"]
    assert not any(e["type"] == "step_started" for e in events)
    assert all(pid_gone(pid) for pid in _served_pids(out))


@pytest.mark.serial  # floors set from the host's real MemAvailable
def test_a_memory_balloon_after_stop_profile_is_stopped_by_the_watchdog(tmp_path: Path) -> None:
    """The profiler buffer that runs away after stop_profile: the guard and runner end the target in time."""
    available = read_meminfo().available
    assert available is not None
    top = available / GIB
    extra = (
        f"[watchdog]\nwarn_gib = {top - 1.6:.2f}\nabort_gib = {top - 2.0:.2f}\nkill_gib = {top - 2.6:.2f}\n"
        "restart_wait_s = 30\n"
    )
    after = small_phase("after", mode="supplementary", requests=400, max_tokens=64)  # still running at the kill
    phases = phases_toml([profiled_phase(20), after])
    out = tmp_path / "run"
    result = run_headless(fault_plan(tmp_path, ["balloon_after_stop=1:3.5"], phases, extra=extra), out)
    events = read_jsonl(out / "events.jsonl")
    types = [e["type"] for e in events]
    assert "profile_captured" in types, result.stdout + result.stderr
    assert any(e["type"] == "watchdog_level" and e["level"] in ("abort", "kill") for e in events)
    failed = [e for e in events if e["type"] == "step_failed"]
    assert failed and failed[0]["step"]["phase"] == "after" and "memory watchdog" in failed[0]["reason"]
    assert all(pid_gone(pid) for pid in _served_pids(out))
    assert result.returncode == 1
    lowest = min(r.get("available_gib") or top for r in read_jsonl(out / "watchdog.jsonl"))
    assert lowest > top - 2.6 - 0.5  # never far below the KILL floor


def test_a_full_run_directory_disk_gives_a_clear_error_and_valid_state(tmp_path: Path) -> None:
    """The run dir on a 160 KiB tmpfs: `run` refuses it before anything starts (the doctor's disk check); a runner
    on a run made there anyway fills it: no traceback, one clear reason, state.json still valid JSON, and the
    incident kept in incident.slot; once there is room a resumed session records it and the summary names it."""
    mount = tmp_path / "small"
    mount.mkdir()
    made = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=160k", "tmpfs", str(mount)], capture_output=True)
    if made.returncode != 0:
        pytest.skip(f"cannot mount a small tmpfs here: {made.stderr.decode().strip()}")
    try:
        plan = write_plan(tmp_path, requests=200, concurrency=4, max_tokens=64)
        out = mount / "run"
        refused = run_headless(plan, out)
        assert refused.returncode == 2 and f"disk: 0 GiB free at {mount}" in refused.stderr, refused.stderr
        assert not out.exists()
        create_run(plan, out, mount)
        result = subprocess.run([sys.executable, "-m", "runners.execute", str(out)], capture_output=True, text=True,
                                timeout=240, cwd=ROOT)  # fmt: skip
        assert result.returncode == 1
        both = result.stdout + result.stderr
        assert "Traceback" not in both, both
        assert "the run directory cannot be written" in both and "No space left on device" in both
        assert "--resume" in both
        state = json.loads((out / "state.json").read_text())  # never half-written
        assert state["resumable"] is True
        assert not (out / "done" / "split1" / "primary" / "replay" / "0").exists()
        incident = read_incident(RunDir(out))
        assert incident is not None and "No space left on device" in incident["reason"], incident
        assert incident["step"]["arm"] == "split1"
        subprocess.run(["mount", "-o", "remount,size=64m", str(mount)], check=True, capture_output=True)
        resumed = subprocess.Popen([sys.executable, "-m", "runners.execute", str(out)], cwd=ROOT,
                                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
        try:  # the new session records the incident first thing; its steps are not this test's: abort it

            def carried_over() -> bool:
                return any(e["type"] == "run_dir_unwritable" for e in read_jsonl(out / "events.jsonl"))

            assert wait_until(carried_over, 60, 0.2)
            resumed.send_signal(signal.SIGTERM)
            assert resumed.wait(60) == 3  # aborted, resumable
        finally:
            if resumed.poll() is None:
                resumed.kill()
                resumed.wait(10)
        [carried] = [e for e in read_jsonl(out / "events.jsonl") if e["type"] == "run_dir_unwritable"]
        assert "No space left on device" in carried["reason"] and carried["step"]["arm"] == "split1"
        assert read_incident(RunDir(out)) is None  # blanked once kept in the events
        summary = (out / "summary.md").read_text()
        assert "the run directory could not be written during split1/primary/replay/0" in summary
        assert "No space left on device" in summary and "a later session resumed" in summary
    finally:
        subprocess.run(["umount", "-l", str(mount)], capture_output=True)
