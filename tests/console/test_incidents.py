"""OOM kills, the known-OOM record and forced matches show in the events log and on the timeline."""

from __future__ import annotations

from pathlib import Path

from console.screens.timeline_screen import render_timeline
from console.views.run_view import RunView
from console.views.timeline import MemoryTimeline, incident_marks
from runners.run.event_types import parse_event
from runners.run.runs import create_run, load_run_plan
from tests.support.plans import write_plan

T0 = 1_700_000_000.0


def test_incidents_are_logged_and_marked_on_the_timeline(tmp_path: Path) -> None:
    view = RunView.for_plan(load_run_plan(create_run(write_plan(tmp_path), tmp_path / "run", tmp_path)).plan, "r1")
    step = {"arm": "split1", "mode": "primary", "phase": "replay", "rep": 0}
    view.apply(
        parse_event(
            {
                "v": 1,
                "t": T0,
                "type": "step_started",
                "step": step,
                "kind": "sharegpt",
                "requests": 6,
                "concurrency": 1,
                "open_loop": False,
            }
        )
    )
    lines = [
        view.apply(parse_event({"v": 1, "t": T0 + 1, "type": "known_oom_matched", "arm": "split8", "mode": "primary",
                    "message": "arm split8 (primary, CUTE_WO_SPLIT=8) matches a known OOM on this host: ..."})),
        view.apply(parse_event({"v": 1, "t": T0 + 50, "type": "guard_ended_target", "cause": "memory KILL: 0.9 GiB",
                    "kill": True, "outcome": "killed process group 42", "target": {"arm": "split1"}, "took_s": 0.01})),
        view.apply(parse_event({"v": 1, "t": T0 + 99, "type": "oom_recorded", "arm": "split1", "mode": "primary",
                    "cause": "guard", "cause_text": "memory KILL: 0.9 GiB", "record": "/s/known-ooms.jsonl"})),
    ]  # fmt: skip
    assert lines[0].startswith("KNOWN OOM (run with --force): arm split8")
    assert lines[2].startswith("split1 (primary): added to this host's known-OOM record (memory KILL: 0.9 GiB)")
    assert [what for _, what in view.incidents] == [
        "split8: matches a known OOM", "split1: killed by the guard", "split1: recorded as a known OOM"
    ]  # fmt: skip
    text = render_timeline(view, MemoryTimeline(), None, {}, 130, T0 + 100).plain
    row = next(line for line in text.splitlines() if line.startswith("incidents"))
    assert row.count("!") == 3
    assert "! " in text and "split1: killed by the guard" in text


def test_incident_marks_land_in_their_time_cells() -> None:
    assert incident_marks([0.0, 5.0, 10.0, 99.0], 0.0, 10.0, 10) == "!    !   !"
