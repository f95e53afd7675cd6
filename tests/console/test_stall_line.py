"""The console's events log shows a stall as the runner wrote it, and the arm's serve target as killed."""

from __future__ import annotations

from pathlib import Path

from console.views.run_view import RunView
from runners.plan.steps import StepKey
from runners.run.event_types import EngineStalled, StallCleared, StallSuspected, parse_event
from runners.run.events import EventLog
from runners.run.files import read_jsonl
from runners.run.runs import create_run, load_run_plan
from tests.support.plans import write_plan


def test_an_engine_stall_is_a_line_in_the_events_log_and_the_arm_reads_killed(tmp_path: Path) -> None:
    view = RunView.for_plan(load_run_plan(create_run(write_plan(tmp_path), tmp_path / "run", tmp_path)).plan, "r1")
    step = StepKey("split1", "primary", "replay", 0)
    view.apply(parse_event({"v": 1, "t": 0.5, "type": "serve_ready", "arm": "split1", "mode": "primary",
                            "model": "tiny", "waited_s": 1.0, "pid": 4242, "container": None,
                            "base_url": "http://127.0.0.1:1"}))  # fmt: skip
    reason = "engine stalled for 2.2 s (requests in flight 2, tokens frozen at 118): no stream received a chunk"
    log = EventLog(tmp_path / "events.jsonl")
    log.emit(EngineStalled(step, 2.2, 2.0, 2, 118.0, 2.0, "generation tokens frozen at 118 over 3 scrapes, "
                           "running 2", "ended: killed (signal 9)", 0.03, reason))  # fmt: skip
    log.close()
    line = view.apply(parse_event(read_jsonl(tmp_path / "events.jsonl")[0]))
    assert line == f"split1/primary/replay/0: ENGINE STALLED: {reason}"
    assert view.log[-1] == line
    arm = view.arms["split1"]
    assert (arm.serve, arm.ready_t, arm.health) == ("killed (stall)", None, "-")
    assert [what for _, what in view.incidents] == ["split1: engine stalled, killed"]  # the timeline's incidents row


def test_a_suspected_stall_holding_dispatch_and_its_clearing_are_lines_in_the_events_log(tmp_path: Path) -> None:
    view = RunView.for_plan(load_run_plan(create_run(write_plan(tmp_path), tmp_path / "run", tmp_path)).plan, "r1")
    step = StepKey("split1", "primary", "replay", 0)
    log = EventLog(tmp_path / "events.jsonl")
    log.emit(StallSuspected(step, 1.04, 1.0, 2.0, 3, 118.0, "generation tokens frozen at 118"))
    log.emit(StallCleared(step, 0.7, "a stream received bytes"))
    log.close()
    suspected, cleared = (view.apply(parse_event(e)) for e in read_jsonl(tmp_path / "events.jsonl"))
    assert suspected == (
        "split1/primary/replay/0: no chunk for 1.0 s with 3 in flight: dispatch held (a stall at 2 s kills the target)"
    )
    assert cleared == "split1/primary/replay/0: a stream received bytes: dispatch continues after 0.7 s held"
    assert view.log[-2:] == [suspected, cleared]
