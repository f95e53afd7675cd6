"""Stalls rehearsed for real: the embedded engine started with `stream_stall` or `zombie=N` for one arm, a real
runner and guard. The stall must be caught within stall_s + 2 s of its onset, the target killed, the step failed in
the stall's words with its evidence kept, and the next arm run to DONE.

The onset is read from requests.jsonl, not from the runner: the last bytes any request received (its last token
chunk, or the end of a request that completed). Run with `-s` to see the figures (docs/benchmarks.md quotes them).
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from runners.run.files import read_json, read_jsonl
from tests.support.plans import Plan, sharegpt_phase
from tests.support.processes import pid_gone, run_headless
from tests.support.project import ENGINE_CONFIG

pytestmark = pytest.mark.slow
STALL_S = 2.0
STALLED_ARM, HEALTHY_ARM = "split4", "split8"


def _plan(tmp_path: Path, fault: str) -> Path:
    """Two arms against the embedded engine; the serve command adds `--test-fault FAULT` for split4 only (the arm's
    CUTE_WO_SPLIT picks it, the one env the engine reports, so both arms' env is still verified)."""
    script = (
        f'F=""; [ "$CUTE_WO_SPLIT" = 4 ] && F="--test-fault {fault}"; exec "$0" -m engine.server --config '
        f'"{ENGINE_CONFIG}" --host "$1" --port "$2" --env-dir "$3" $F'
    )
    command = ["/bin/sh", "-c", script, "{python}", "{host}", "{port}", "{env_dir}"]
    serve = {"command": command, "ready_timeout_s": 60, "stop_timeout_s": 5}
    arms = [{"name": STALLED_ARM, "env": {"CUTE_WO_SPLIT": "4"}}, {"name": HEALTHY_ARM, "env": {"CUTE_WO_SPLIT": "8"}}]
    phase = sharegpt_phase(requests=8, concurrency=2, repeats=2, max_tokens=16, ignore_eos=True, http_timeout_s=30,
                           stall_s=STALL_S, metrics_interval_s=0.25, deadline_s=60)  # fmt: skip
    return Plan("stall", serve, arms, [phase]).write(tmp_path)


def _onset(records: list[dict]) -> float:
    """Wall time of the last bytes any request received: its last token chunk, or its end when it completed."""
    return max(r["sent_at"] + max([*r["chunk_ns"][-1:], r["e2e_ns"] or 0]) / 1e9 for r in records)


def _stalled_run(tmp_path: Path, fault: str) -> tuple[Path, dict, list[dict]]:
    """Run the plan; check what every stall must show; return the run, the engine_stalled event and the records."""
    out = tmp_path / "run"
    result = run_headless(_plan(tmp_path, fault), out, timeout_s=180)
    assert result.returncode == 1, result.stdout[-3000:] + result.stderr[-3000:]
    events = read_jsonl(out / "events.jsonl")
    stalled = [e for e in events if e["type"] == "engine_stalled"]
    assert len(stalled) == 1, [e["type"] for e in events]
    event = stalled[0]
    line = f"{STALLED_ARM}/primary/replay/0: ENGINE STALLED: {event['reason']}"  # the console's line (rich wraps it)
    assert " ".join(line.split()) in " ".join(result.stdout.split()), result.stdout[-3000:]
    assert "1 engine stall(s): the target was killed" in (out / "summary.md").read_text()
    assert event["step"] == {"arm": STALLED_ARM, "mode": "primary", "phase": "replay", "rep": 0}
    assert event["how"] == "ended: killed (signal 9)" and event["stall_s"] == STALL_S

    step = out / "arms" / STALLED_ARM / "primary" / "replay" / "0"
    records = read_jsonl(step / "requests.jsonl")
    detection_s = event["t"] - _onset(records)
    print(f"\n{fault}: stall onset to kill {detection_s:.2f} s (stall_s {STALL_S:g}; the runner's own figure "
          f"{event['quiet_s']:.2f} s quiet + {event['kill_s']:.3f} s kill)", file=sys.stderr)  # fmt: skip
    assert STALL_S <= detection_s <= STALL_S + 2.0, (detection_s, event)

    failed = {(e["step"]["arm"], e["step"]["rep"]): e["reason"] for e in events if e["type"] == "step_failed"}
    assert failed[(STALLED_ARM, 0)] == event["reason"]
    assert failed[(STALLED_ARM, 0)].startswith(f"engine stalled for {event['quiet_s']:.1f} s (requests in flight 2, ")
    assert failed[(STALLED_ARM, 1)] == "not run: the serve target died in an earlier step"
    assert not any(arm == HEALTHY_ARM for arm, _ in failed), failed
    done = [e["step"] for e in events if e["type"] == "step_finished"]
    assert [(s["arm"], s["rep"]) for s in done] == [(HEALTHY_ARM, 0), (HEALTHY_ARM, 1)]  # the next arm ran

    record = read_json(step / "phase.json")
    assert record["stall"]["reason"] == event["reason"] and record["stall"]["in_flight"] == 2
    assert record["server_metrics"]["scrapes_ok"] >= 2 and (step / "server_metrics.jsonl").is_file()
    assert not (out / "done" / STALLED_ARM / "primary" / "replay" / "0").exists()
    state = read_json(out / "state.json")
    assert state["status"] == "failed" and state["resumable"] is True
    served = [e["target"]["pid"] for e in events if e["type"] == "serve_stopped"]
    assert len(served) == 2 and all(pid_gone(pid) for pid in served)
    return out, event, records


@pytest.mark.serial  # a stall caught within 2 s of stall_s
def test_an_engine_whose_streams_stop_mid_response_is_killed_and_the_next_arm_runs(tmp_path: Path) -> None:
    """stream_stall=3: every stream of split4 stops after 3 tokens and stays open; the engine generates no more."""
    _out, event, records = _stalled_run(tmp_path, "stream_stall=3")
    assert len(records) == 2 and all(r["status"] == "connection_error" for r in records), records
    assert all(r["output_tokens"] == 3 and len(r["chunk_ns"]) == 4 for r in records)  # the role chunk, 3 tokens
    assert event["tokens"] is not None and event["metrics"].startswith("generation tokens frozen at")


@pytest.mark.serial  # a stall caught within 2 s of stall_s
def test_a_zombie_engine_mid_step_is_killed_and_the_next_arm_runs(tmp_path: Path) -> None:
    """zombie=4: readiness, the usage probe and the step's first two requests are answered; then every POST hangs
    while /health and /metrics still answer (0 running, tokens frozen)."""
    _out, event, records = _stalled_run(tmp_path, "zombie=4")
    assert sorted(r["status"] for r in records) == ["connection_error", "connection_error", "ok", "ok"], records
    assert all(not r["chunk_ns"] for r in records if r["status"] != "ok")  # the hung requests never got a byte
    assert event["running"] == 0 and event["tokens"] is not None, event
