"""A pause must not change the verdict: a live runner (the embedded engine, a real process) whose second arm is paused
for a few seconds mid-step gets the verdict it would get unpaused, and summary.md shows the seconds paused.

The plan's gates let two arms of the same engine qualify (an arm up to 3 times as slow as the baseline is a
candidate: on 2 shared cores one arm's step ran 2.4 times as long as the other's), so without a pause the verdict of
`split8` is `default candidate` whatever the noise. The pause is longer than 3 baseline steps, so counted in the wall
time it would make the verdict `keep opt-in`; the test checks that on the raw clock too.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from runners.gates.candidate import KEEP_OPT_IN, CandidateInput, CandidateRules, candidate_verdicts
from runners.report.summary import write_report
from runners.run.control import request_abort, request_continue, request_pause
from runners.run.files import read_json, write_json_atomic
from runners.run.rundir import RunDir, runner_alive
from runners.run.runs import create_run, spawn_detached
from tests.support.events import read_events
from tests.support.plans import Plan, engine_serve, sharegpt_phase
from tests.support.waits import wait_until

pytestmark = pytest.mark.slow
MIN_IMPROVEMENT_PCT = -200.0


def _plan(tmp_path: Path) -> Path:
    question = {"question": "What is 2 plus 3?", "answer": "2 + 3 = 5\n#### 5"}
    for name in ("gsm8k_test.jsonl", "gsm8k_train.jsonl"):
        (tmp_path / name).write_text("\n".join(json.dumps(question) for _ in range(3)) + "\n")
    # two arms of one engine qualify: only a pause can fail min_wall_improvement_pct
    gates = {"baseline": "split1", "min_wall_improvement_pct": MIN_IMPROVEMENT_PCT, "tpot_p95_tolerance_pct": 400}
    arms = [{"name": "split1", "env": {"CUTE_WO_SPLIT": "1"}}, {"name": "split8", "env": {"CUTE_WO_SPLIT": "8"}}]
    phases = [
        {"name": "gsm8k", "kind": "gsm8k", "test_file": "gsm8k_test.jsonl", "train_file": "gsm8k_train.jsonl",
         "questions": 2, "fewshot": 1, "max_tokens": 4, "http_timeout_s": 30},
        sharegpt_phase(requests=8, concurrency=2, max_tokens=24, ignore_eos=True, http_timeout_s=30),
    ]  # fmt: skip
    serve = engine_serve(kind="process", ready_timeout_s=60)
    return Plan("pause-verdict", serve, arms, phases, sections={"gates": gates}).write(tmp_path)


def _replay_event(run: RunDir, kind: str, arm: str) -> dict | None:
    return next(
        (
            e
            for e in read_events(run)
            if e.get("type") == kind and e["step"]["arm"] == arm and e["step"]["phase"] == "replay"
        ),
        None,
    )


@pytest.mark.serial  # the verdict needs client and server latency to agree, and the pause's drain to stay short
def test_a_pause_mid_step_leaves_the_verdict_and_shows_in_the_summary(tmp_path: Path) -> None:
    run = create_run(_plan(tmp_path), tmp_path / "run", tmp_path)
    runner = spawn_detached(run)
    try:
        assert wait_until(lambda: _replay_event(run, "step_progress", "split8"), 90), run.runner_log.read_text()[-2000:]
        request_pause(run, by="test")  # one request is done, the next ones are in flight
        assert wait_until(lambda: any(e.get("type") == "dispatch_paused" for e in read_events(run)), 5)
        base_wall = _replay_event(run, "step_finished", "split1")["stats"]["wall_s"]
        pause_s = 3 * base_wall + 1.0  # counted in the wall time, this alone would fail the wall criterion
        time.sleep(pause_s)
        request_continue(run)
        assert wait_until(lambda: not runner_alive(run) and runner.poll() is not None, 90)
    finally:
        if runner.poll() is None:
            request_abort(run, "test cleanup", by="test")
            runner.wait(30)
    assert runner.returncode == 0, run.runner_log.read_text()[-2000:]

    base = read_json(run.root / "arms/split1/primary/replay/0/phase.json")
    paused = read_json(run.root / "arms/split8/primary/replay/0/phase.json")
    assert base["paused_s"] == 0 and base["pause"]["intervals"] == []
    pause = paused["pause"]
    assert pause["paused_s"] >= pause_s - 0.5 and len(pause["intervals"]) == 1
    assert pause["idle_s"] + pause["in_flight_s"] == pytest.approx(pause["paused_s"], abs=0.01)
    assert pause["idle_s"] >= pause_s - 1.5  # the requests in flight drained within a second
    assert pause["requests"] >= 1  # at least one request was in flight when dispatch paused
    assert paused["stats"]["wall_s"] == pytest.approx(paused["wall_clock_s"] - pause["idle_s"], abs=0.01)
    assert paused["stats"]["latency_excluded"] == pause["requests"]
    records = [json.loads(line) for line in (run.root / "arms/split8/primary/replay/0/requests.jsonl").open()]
    assert sum(r["during_pause"] for r in records) == pause["requests"]
    assert all(r["ended_ns"] >= r["sent_ns"] for r in records)

    # the pause, counted in the wall time, would have decided the verdict: that is the bug this test guards
    counted = CandidateInput("split8", paused["wall_clock_s"], 1.0, 0.0, quality_ok=True, correct_kernels=True)
    baseline = CandidateInput("split1", base["stats"]["wall_s"], 1.0, 0.0)
    [old] = candidate_verdicts(baseline, [counted], CandidateRules(min_wall_improvement_pct=MIN_IMPROVEMENT_PCT))
    assert old.verdict == KEEP_OPT_IN, old

    summary = read_json(run.summary_json)
    gates = {(g["arm"], g["name"]): g for g in summary["gates"]}
    candidate = gates[("split8", "default-candidate")]
    assert summary["verdicts"] == {"split1": "baseline", "split8": "default candidate"}, candidate
    assert candidate["numbers"]["wall_mean_s"] == pytest.approx(paused["stats"]["wall_s"])
    assert candidate["numbers"]["wall_uncertain_s"] == pytest.approx(pause["in_flight_s"])
    split8 = next(a for a in summary["arms"] if a["arm"] == "split8")
    assert split8["paused_s"] == pytest.approx(pause["paused_s"])
    assert split8["paused_excluded_s"] == pytest.approx(pause["idle_s"])

    md = run.summary_md.read_text()
    assert "| **default candidate** |" in md.split("## Gates")[0]
    assert "wall s (sum)" in md and "wall mean s" in md
    excluded = f"{pause['paused_s']:.1f} ({pause['idle_s']:.1f} excluded from wall)"
    step_row = next(line for line in md.splitlines() if line.startswith("| split8/primary/replay/0 |"))
    arm_row = next(line for line in md.splitlines() if line.startswith("| split8 | CUTE_WO_SPLIT=8 |"))
    assert excluded in step_row and f"{pause['requests']} request(s) in flight left out of latency" in step_row
    assert excluded in arm_row
    assert f"split8/primary/replay/0: dispatch was paused for {pause['paused_s']:.1f} s" in md

    finished = next(e for e in read_events(run) if e.get("type") == "step_finished" and e["step"]["arm"] == "split8"
                    and e["step"]["phase"] == "replay")  # fmt: skip
    assert finished["pause"] == pause

    # the same run as a runner before this fix recorded it: the pause inside the wall time, no account of it;
    # the wall criterion cannot be judged either way, so the arm gets no verdict, and summary.md says why
    legacy = {k: v for k, v in paused.items() if k not in ("pause", "wall_clock_s")}
    legacy["stats"] = {**paused["stats"], "wall_s": paused["wall_clock_s"]}
    write_json_atomic(run.root / "arms/split8/primary/replay/0/phase.json", legacy)
    outcome = write_report(run.root, plots=False)
    assert outcome.gates.verdicts["split8"] == "no verdict"
    md = run.summary_md.read_text()
    assert "on both sides of the -200% needed; no verdict on wall time: measure the step again without pausing" in md
    assert "its wall time includes the pause (recorded before pauses were left out)" in md
