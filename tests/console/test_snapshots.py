"""Snapshots of the main screen at 80×24, 120×40 and 200×50, on a finished run written with fixed times and ids."""

from __future__ import annotations

import json
import os
import time
from dataclasses import replace
from pathlib import Path

import pytest
from textual.widgets import DataTable

from console.app import RunConsole
from console.panels.step_tree import StepTree, step_label
from console.panels.watchdog_panel import WatchdogPanel
from runners.replay.metrics import phase_stats
from runners.report.summary_model import ArmSummary, Summary, write_summary
from runners.run.event_types import (
    EnvVerified,
    Event,
    GuardStarted,
    RunFinished,
    RunStarted,
    ServeReady,
    ServeStarting,
    ServeStopped,
    StepFinished,
    StepStarted,
)
from runners.run.events import event_line
from runners.run.files import JsonlWriter, write_json_atomic
from runners.run.rundir import RunDir, RunState
from runners.run.runs import create_run, load_run_plan
from tests.support.plans import write_plan

T0 = 1_790_000_000.0  # fixed event times: the clocks on screen do not depend on when the test runs


@pytest.fixture
def finished_run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> RunDir:
    """A run that finished: two arms, every step done, guard samples, no summary; ids and times fixed."""
    monkeypatch.setenv("TZ", "UTC")
    time.tzset()
    run = create_run(write_plan(tmp_path), tmp_path / "run", tmp_path)
    info = json.loads(run.run_json.read_text())
    write_json_atomic(run.run_json, {**info, "run_id": "snapshot-run"})
    steps = load_run_plan(run).plan.steps()
    events = JsonlWriter(run.events)
    t = T0

    def emit(event: Event) -> None:
        nonlocal t
        t += 1.5
        events.append(event_line(event, t))

    emit(RunStarted("snapshot-run", "mini", 4242, ["split1", "split8"], [s.as_dict() for s in steps], already_done=0))
    emit(GuardStarted(4243, 4242, {"warn": 12.0, "abort": 8.0, "kill": 4.0}, mlocked=True, oom_score_adj=-900))
    url = "http://127.0.0.1:8000"
    for arm in ("split1", "split8"):
        emit(ServeStarting(arm, "primary", "process", {"kind": "process", "base_url": url}))
        emit(ServeReady(arm, "primary", "tiny", 2.0, 5000, None, url))
        emit(EnvVerified(arm, {"CUTE_WO_SPLIT": arm.removeprefix("split")}, [], "EngineCore pid 5001 (vLLM 0.32.0)"))
        for step in (s for s in steps if s.arm == arm):
            emit(StepStarted(step, "sharegpt", 6, 3, open_loop=False))
            stats = {"requests": 6, "ok": 6, "failed": 0, "wall_s": 3.0, "ttft_p50_ms": 40.0, "ttft_p95_ms": 60.0,
                     "tpot_p50_ms": 9.5, "tpot_p95_ms": 11.0, "itl_p50_ms": 9.4, "itl_p95_ms": 12.0}  # fmt: skip
            emit(StepFinished(step, stats))
        emit(ServeStopped(arm, "primary", "terminated (signal 15)", {"kind": "process", "base_url": url}))
    emit(RunFinished("finished", f"all {len(steps)} steps done", len(steps), 0))  # as state.json says
    events.close()
    for i in range(6):
        sample = {"t": T0 + 5 * i, "available_gib": 20.0 - i, "gpu": {"available": False, "reason": "no NVIDIA GPU"}}
        record = {"t": T0 + 5 * i, "level": "ok", "reason": "above every floor", "available_gib": 20.0 - i,
                  "fill_gib_s": None, "restart_allowed": True, "sample": sample}  # fmt: skip
        with run.watchdog_jsonl.open("a") as f:
            f.write(json.dumps(record) + "\n")
    state = RunState(run_id="snapshot-run", plan="mini", status="finished", resumable=False,
                     reason=f"all {len(steps)} steps done", steps_total=len(steps), steps_done=len(steps),
                     started_at=T0, ended_at=t)  # fmt: skip
    run.write_state(state)
    os.utime(run.state_json, (t, t))
    return run


@pytest.fixture
def judged_run(finished_run: RunDir) -> RunDir:
    """The finished run with its summary.json: each arm's results and verdict (the summary table, under the tree)."""
    stats = replace(phase_stats([], 3.0), requests=6, ok=6, ttft_p50_ms=40.0, ttft_p95_ms=60.0, tpot_p50_ms=9.5,
                    tpot_p95_ms=11.0, output_tok_s=64.0)  # fmt: skip
    verdicts = {"split1": "baseline", "split8": "keep opt-in"}
    arms = tuple(
        ArmSummary(arm=arm, arm_env=f"CUTE_WO_SPLIT={arm.removeprefix('split')}", env_status="verified",
                   env_where="EngineCore pid 5001", steps_done=1, steps_total=1, stats=stats, paused_s=0.0,
                   paused_excluded_s=0.0, verdict=verdict, gsm8k_correct=None, gsm8k_questions=None)
        for arm, verdict in verdicts.items()
    )  # fmt: skip
    summary = Summary(run_id="snapshot-run", plan="mini", status="finished", arms=arms, verdicts=verdicts)
    write_summary(finished_run.summary_json, summary)
    return finished_run


@pytest.mark.serial  # the snapshot is taken after a settle bounded to 5 s
@pytest.mark.parametrize("size", [(80, 24), (120, 40), (200, 50)], ids=["80x24", "120x40", "200x50"])
def test_main_screen(snap_compare, judged_run: RunDir, size: tuple[int, int]) -> None:
    """The layout at the sizes people use: at 80×24 too, the watchdog's level and headroom and every verdict."""
    app = RunConsole(judged_run, readonly=True)

    async def settle(pilot) -> None:
        summary = app.query_one("#summary")
        for _ in range(100):  # bounded: until every event and guard record is read, and the summary laid out
            if app.view and app.view.status == "finished" and app.watchdog.records >= 6 and summary.region.height > 2:
                break
            await pilot.pause(0.05)
        tree = app.query_one("#steps")
        app.set_focus(None)  # no focus, no tree cursor: where they land at mount depends on timing
        tree.cursor_line = -1
        tree.scroll_home(animate=False)
        await pilot.pause(0.3)

    assert snap_compare(app, terminal_size=size, run_before=settle)


async def test_t_shows_the_whole_run_on_one_time_axis(finished_run: RunDir) -> None:
    from console.screens.timeline_screen import Timeline, TimelineScreen

    app = RunConsole(finished_run, readonly=True)
    async with app.run_test(size=(120, 40)) as pilot:
        for _ in range(100):
            if app.view and app.view.status == "finished" and len(app.timeline.points) >= 6:
                break
            await pilot.pause(0.05)
        await pilot.press("t")
        assert isinstance(app.screen, TimelineScreen)
        text = str(app.screen.query_one(Timeline).render())
        lines = text.splitlines()
        assert lines[0].startswith("snapshot-run") and "lowest 15.0 GiB, KILL floor 4 GiB" in lines[1]
        steps = [line for line in lines if "/primary/replay/0" in line]
        assert len(steps) == 2 and all("█" in line for line in steps)
        first, second = (line.index("█") for line in steps)
        assert first < second  # split1 ran before split8
        assert lines[-1].startswith("verdicts") and "none yet" in lines[-1]
        await pilot.press("t")
        assert not isinstance(app.screen, TimelineScreen)


def test_memory_timeline_stays_bounded_and_keeps_the_lows_and_the_worst_level() -> None:
    from console.views.timeline import MemoryTimeline, memory_cells, step_bar

    memory = MemoryTimeline(capacity=8)
    for i in range(100):
        memory.add(float(i), 50.0 - (i == 37) * 45.0, "kill" if i == 37 else "ok")
    assert len(memory.points) <= 8
    assert min(p.available_gib for p in memory.points) == 5.0 and any(p.level == "kill" for p in memory.points)
    memory.add(1.0, 1.0, "kill")  # older than the last point: ignored
    assert min(p.available_gib for p in memory.points) == 5.0
    memory.add_record({"t": 200.0, "available_gib": 40.0, "level": "warn"})
    memory.add_record({"t": "bad"})
    assert memory.points[-1].t == 200.0
    cells = memory_cells(memory, 0.0, 201.0, 10)
    assert len(cells) == 10 and cells[-1].level == "warn"
    assert step_bar(50.0, 100.0, 0.0, 100.0, 10, "#") == "     #####"
    assert step_bar(None, None, 0.0, 100.0, 4, "#") == "    "


SIZE_CLASSES = [((80, 24), {"-narrow", "-short"}), ((120, 40), {"-wide", "-tall"}), ((200, 50), {"-wide", "-tall"})]


@pytest.mark.parametrize(("size", "classes"), SIZE_CLASSES, ids=["80x24", "120x40", "200x50"])
async def test_every_size_shows_the_watchdogs_headroom_every_verdict_and_whole_step_labels(
    judged_run: RunDir, size: tuple[int, int], classes: set[str]
) -> None:
    app = RunConsole(judged_run, readonly=True)
    async with app.run_test(size=size) as pilot:
        summary = app.query_one("#summary", DataTable)
        for _ in range(100):
            if app.watchdog.records >= 6 and summary.region.height > 2 and app.view and app.view.status == "finished":
                break
            await pilot.pause(0.05)
        assert classes <= app.screen.classes
        watchdog, side = app.query_one("#watchdog", WatchdogPanel), app.query_one("#side")
        assert side.region.contains_region(watchdog.region) and watchdog.content_size.height >= 1
        shown = watchdog.render().plain
        assert " OK " in shown and "+11.0" in shown  # the level, and the headroom above the KILL floor (4 GiB)
        verdict_end = sum(c.get_render_width(summary) for c in list(summary.columns.values())[:2])
        assert verdict_end <= summary.scrollable_content_region.width and app.screen.region.contains_region(
            summary.region
        )  # fmt: skip
        assert [summary.get_row_at(i)[1] for i in range(summary.row_count)] == ["baseline", "keep opt-in"]
        tree = app.query_one("#steps", StepTree)
        labels = [node.label for node in tree._step_nodes.values()]
        assert labels and all(label.cell_len <= tree.label_width for label in labels)


def test_a_step_label_drops_the_primary_mode_before_it_is_cut() -> None:
    from console.views.run_view import StepView
    from runners.plan.steps import StepKey

    step = StepView(StepKey("split1", "primary", "sharegpt", 0))
    step.status, step.completed, step.total, step.started_t, step.ended_t = "done", 2000, 2000, 0.0, 1234.0
    assert step_label(step, 2000.0).plain == "✔ sharegpt #0 (primary) 2000/2000 1234s"
    assert step_label(step, 2000.0, width=30).plain == "✔ sharegpt #0 2000/2000 1234s"
    supplementary = StepView(StepKey("split1", "supplementary", "sharegpt", 0))
    assert step_label(supplementary, 0.0, width=10).plain.endswith("#0 (supp)")
