"""The host's known-OOM record: incidents read from a run's events, written once, matched against plans."""

from __future__ import annotations

import json
import socket
import time
from pathlib import Path

import pytest

from runners.evidence.oom_record import (
    env_hash,
    known_oom_matches,
    read_records,
    record_path,
    record_run_ooms,
)
from runners.plan.load import load_plan
from runners.plan.steps import StepKey
from runners.run.event_types import GuardEndedTarget, GuardStarted, ServeFailed, ServeOom, StepFailed
from runners.run.events import EventLog
from runners.run.files import read_jsonl, torn_sidecar
from runners.run.runs import create_run
from runners.soak import execute as runner
from runners.soak.host_preflight import host_preflight
from tests.support.fake_runtime import NoGuard
from tests.support.plans import write_plan

FLOORS = {"warn": 3.0, "abort": 2.0, "kill": 1.0}
TARGET = {"kind": "process", "arm": "split8", "mode": "primary", "pid": 42}


def _run(tmp_path: Path):
    plan = write_plan(tmp_path)
    run = create_run(plan, tmp_path / "run", tmp_path)
    return run, load_plan(plan)


def _emit(run, *events) -> None:
    log = EventLog(run.events)
    for event in events:
        log.emit(event)
    log.close()


def test_a_guard_kill_is_recorded_with_env_identity_floors_and_the_memory_around_it(tmp_path: Path) -> None:
    run, loaded = _run(tmp_path)
    now = time.time()
    with open(run.watchdog_jsonl, "w") as fh:
        for dt, level, gib in ((-90, "ok", 9.0), (-30, "warn", 2.5), (-1, "kill", 0.9), (5, "ok", 8.0), (40, "ok", 9)):
            fh.write(json.dumps({"t": now + dt, "level": level, "available_gib": gib, "fill_gib_s": 0.5}) + "\n")
    _emit(run, GuardStarted(1, 2, FLOORS, True, -1000),
          GuardEndedTarget("memory KILL: 0.9 GiB < 1 GiB", True, "killed process group 42", TARGET, 0.01),
          StepFailed(StepKey("split8", "primary", "replay", 0), "memory watchdog KILL: ..."))  # fmt: skip
    [record] = record_run_ooms(run, loaded)
    assert (record["arm"], record["mode"], record["cause"], record["host"]) == (
        "split8", "primary", "guard", socket.gethostname()
    )  # fmt: skip
    assert record["env"] == {"CUTE_WO_SPLIT": "8"} and record["env_hash"] == env_hash({"CUTE_WO_SPLIT": "8"})
    assert record["floors_gib"] == FLOORS and record["identity"].startswith("{python} -m engine.server --config ")
    assert [m["level"] for m in record["memory"]] == ["warn", "kill", "ok"]  # 60 s before to 10 s after
    assert read_records() == [record] and record_run_ooms(run, loaded) == []  # written once


def test_a_cgroup_oom_and_the_death_it_caused_are_one_kernel_incident(tmp_path: Path) -> None:
    run, loaded = _run(tmp_path)
    step = StepKey("split1", "primary", "replay", 0)
    died = "the serve target ended during the step: OOM-killed (exit code 137); OOMKilled=true"
    _emit(run, ServeOom(step, 1, 1, True, "c1"), StepFailed(step, died),
          ServeFailed("split8", "primary", "exited during start-up: OOM-killed (signal 9)"))  # fmt: skip
    records = record_run_ooms(run, loaded)
    assert [(r["arm"], r["cause"]) for r in records] == [("split1", "kernel"), ("split8", "kernel")]
    assert records[0]["cause_text"].startswith("the kernel OOM-killed 1 process(es)")


def test_a_plan_matches_only_the_same_host_identity_and_env(tmp_path: Path) -> None:
    run, loaded = _run(tmp_path)
    _emit(run, GuardEndedTarget("memory KILL: x", True, "killed", TARGET, 0.01))
    [record] = record_run_ooms(run, loaded)
    [match] = known_oom_matches(loaded)
    assert (match.arm, match.mode) == ("split8", "primary")
    assert "arm split8 (primary, CUTE_WO_SPLIT=8) matches a known OOM on this host: memory KILL: x" in match.message()
    assert known_oom_matches(loaded, host="another-host") == []
    (tmp_path / "other").mkdir()
    other = write_plan(tmp_path / "other")
    assert [m.arm for m in known_oom_matches(load_plan(other))] == ["split8"]  # same command and env elsewhere
    assert known_oom_matches(loaded, [{**record, "env_hash": env_hash({"CUTE_WO_SPLIT": "4"})}]) == []
    assert known_oom_matches(loaded, [{**record, "identity": "docker vllm:dev"}]) == []


def test_a_torn_or_garbled_record_file_is_appended_to_on_a_fresh_line(tmp_path: Path) -> None:
    run, loaded = _run(tmp_path)
    record_path().parent.mkdir(parents=True, exist_ok=True)
    record_path().write_text('not json\n{"v": 1, "t": 1, "host": "h", "ar')
    _emit(run, GuardEndedTarget("memory KILL: x", True, "killed", TARGET, 0.01))
    [record] = record_run_ooms(run, loaded)
    lines = record_path().read_text().splitlines()
    assert lines[0] == "not json" and json.loads(lines[1]) == record  # a fresh line, never glued on
    [torn] = read_jsonl(torn_sidecar(record_path()))  # the fragment is kept beside it, as every JSONL file's is
    assert torn["text"] == '{"v": 1, "t": 1, "host": "h", "ar'
    assert read_records() == [record]


async def test_the_runner_records_a_dead_session_s_oom_and_says_when_a_forced_run_matches(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(runner, "GuardLink", NoGuard)
    run, _ = _run(tmp_path)
    _emit(run, GuardEndedTarget("memory KILL: x", True, "killed", TARGET, 0.01))  # a session whose runner died
    await runner.execute(run, argv=["test"])
    events = read_jsonl(run.events)
    [recorded] = [e for e in events if e["type"] == "oom_recorded"]
    assert (recorded["arm"], recorded["cause"], recorded["record"]) == ("split8", "guard", str(record_path()))
    [matched] = [e for e in events if e["type"] == "known_oom_matched"]
    assert matched["arm"] == "split8" and "matches a known OOM" in matched["message"]


async def test_an_unwritable_record_is_an_event_not_a_crash(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(runner, "GuardLink", NoGuard)
    blocker = tmp_path / "state-is-a-file"
    blocker.write_text("")
    monkeypatch.setenv("GB10_STATE_DIR", str(blocker))
    run, _ = _run(tmp_path)
    _emit(run, GuardEndedTarget("memory KILL: x", True, "killed", TARGET, 0.01))
    result = await runner.execute(run, argv=["test"])
    assert "no guard in this test" in result.reason
    failed = [e["error"] for e in read_jsonl(run.events) if e["type"] == "oom_record_failed"]
    assert len(failed) == 3 and all(str(blocker) in error for error in failed)  # record (start), match, record (end)
    found = host_preflight(load_plan(run.plan_toml))
    assert any(w.startswith(f"the known-OOM record {blocker}/known-ooms.jsonl cannot be read") for w in found.warnings)
