"""Pause and continue dispatch: the gate, the replay against a real loopback server, and a live runner end to end."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest

from runners.evidence.limitations import known_limitations
from runners.replay.dispatch import Arrivals
from runners.replay.dispatch_gate import DispatchGate
from runners.replay.metrics import phase_stats
from runners.replay.pauses import account_pauses
from runners.replay.prompts import builtin_conversations
from runners.run.control import pause_requested, request_abort, request_continue, request_pause
from runners.run.files import read_json
from runners.run.rundir import runner_alive
from runners.run.runs import create_run, load_run_plan, spawn_detached
from runners.testbed.mock_server import MockSettings
from tests.support.events import event_types, read_events
from tests.support.mock import StartMock
from tests.support.plans import write_plan
from tests.support.replay import run_replay
from tests.support.waits import pilot_until, wait_until


async def test_gate_counts_time_closed_and_wait_open_returns_on_open_or_abort() -> None:
    gate, abort = DispatchGate(), asyncio.Event()
    assert not gate.paused and gate.paused_s() == 0.0 and gate.resume() is None
    assert gate.pause() and not gate.pause()
    waiter = asyncio.create_task(gate.wait_open(abort))
    await asyncio.sleep(0.2)
    assert not waiter.done() and gate.paused_s() >= 0.15
    lasted = gate.resume()
    await asyncio.wait_for(waiter, 1.0)
    assert lasted is not None and lasted >= 0.15 and abs(gate.paused_s() - lasted) < 1e-9
    gate.pause()
    waiter = asyncio.create_task(gate.wait_open(abort))
    abort.set()
    await asyncio.wait_for(waiter, 1.0)  # an abort never waits for a paused gate


@pytest.mark.parametrize(
    "arrivals", [Arrivals(2), Arrivals(100, offsets=[0.0, 0.05, 0.1, 0.15])], ids=["closed", "open"]
)
@pytest.mark.serial  # a 0.45 s schedule
async def test_nothing_is_sent_while_paused_and_everything_after(start_mock: StartMock, arrivals: Arrivals) -> None:
    url = await start_mock(MockSettings(ttft_ms=5, itl_ms=1, tokens=4))
    gate = DispatchGate()
    gate.pause()
    sent: list[float] = []
    task = asyncio.create_task(run_replay(url, builtin_conversations()[:4], arrivals, gate=gate))
    await asyncio.sleep(0.5)
    assert not task.done()
    opened = time.perf_counter()
    gate.resume()
    outcome, seen = await asyncio.wait_for(task, 10.0)
    sent = [r.scheduled_ns for r in seen]
    assert [r.status for r in outcome.records] == ["ok"] * 4 and not outcome.aborted
    assert outcome.wall_s >= 0.5  # the replay's clock includes the pause; the step leaves its idle part out
    [(start, end)] = outcome.pauses
    assert start == 0.0 and 0.45 <= end <= outcome.wall_s
    assert not any(r.during_pause for r in outcome.records)  # nothing was in flight: every latency counts
    account = account_pauses(outcome.pauses, outcome.records)
    assert account.idle_s == pytest.approx(end) and account.in_flight_s == 0.0
    if arrivals.offsets is not None:  # the schedule resumed where it stopped: still 50 ms apart, shifted
        gaps = [b - a for a, b in zip(sorted(sent), sorted(sent)[1:], strict=False)]
        assert all(45e6 <= g <= 80e6 for g in gaps), gaps
        assert min(sent) >= 0.45e9
    assert time.perf_counter() - opened < 5


async def test_a_request_in_flight_during_a_pause_is_marked_and_the_pause_splits(start_mock: StartMock) -> None:
    url = await start_mock(MockSettings(ttft_ms=5, itl_ms=30, tokens=10))  # one request lasts ~0.3 s
    gate = DispatchGate()
    task = asyncio.create_task(run_replay(url, builtin_conversations()[:2], Arrivals(1), gate=gate))
    await asyncio.sleep(0.1)
    gate.pause()  # the first request is in flight: it finishes, the second waits
    await asyncio.sleep(0.6)
    gate.resume()
    outcome, _ = await asyncio.wait_for(task, 10.0)
    first, second = sorted(outcome.records, key=lambda r: r.sent_ns)
    assert first.during_pause and not second.during_pause
    assert all(r.ended_ns is not None and r.ended_ns >= r.sent_ns for r in outcome.records)
    [(start, end)] = outcome.pauses
    assert second.sent_ns / 1e9 >= end  # nothing started while paused
    account = account_pauses(outcome.pauses, outcome.records)
    assert account.requests == 1
    assert account.in_flight_s == pytest.approx(first.ended_ns / 1e9 - start, abs=1e-6)  # the drain
    assert account.idle_s == pytest.approx(end - first.ended_ns / 1e9, abs=1e-6)
    assert 0.1 < account.in_flight_s < 0.4 and account.idle_s > 0.2
    stats = phase_stats(outcome.records, outcome.wall_s - account.idle_s)
    assert stats.latency_excluded == 1 and stats.distributions["ttft_ms"].count == 1


@pytest.mark.serial  # a 0.4 s wall
async def test_an_earlier_pause_does_not_shift_a_later_open_loop_schedule(start_mock: StartMock) -> None:
    """The gate lives for the whole session: a pause during one step must not delay the next step's arrivals."""
    url = await start_mock(MockSettings(ttft_ms=5, itl_ms=1, tokens=4))
    gate = DispatchGate()
    gate.pause()
    await asyncio.sleep(0.5)
    gate.resume()  # an earlier step's pause, over before this replay starts
    outcome, _ = await asyncio.wait_for(
        run_replay(url, builtin_conversations()[:2], Arrivals(10, offsets=[0.0, 0.05]), gate=gate), 10.0
    )
    assert outcome.pauses == () and outcome.wall_s < 0.4
    assert max(r.scheduled_ns for r in outcome.records) < 0.2e9  # due at 0.05 s, not 0.55 s


def test_pause_and_continue_a_live_run_end_to_end(tmp_path: Path) -> None:
    run = create_run(write_plan(tmp_path, requests=24, concurrency=2, max_tokens=24), tmp_path / "run", tmp_path)
    runner = spawn_detached(run)
    try:
        assert wait_until(lambda: any(e.get("type") == "request_progress" or e.get("type") == "step_started"
                                      for e in read_events(run)), 60)  # fmt: skip
        request_pause(run, by="test")
        assert wait_until(lambda: event_types(run).count("dispatch_paused") == 1, 10)
        assert pause_requested(run) == {
            "by": "test",
            "pid": pause_requested(run)["pid"],
            "at": pytest.approx(time.time(), abs=30),
        }
        time.sleep(1.5)
        request_continue(run)
        assert wait_until(lambda: "dispatch_resumed" in event_types(run), 10)
        resumed = next(e for e in read_events(run) if e.get("type") == "dispatch_resumed")
        assert resumed["paused_s"] >= 1.0
        assert wait_until(lambda: not runner_alive(run) and runner.poll() is not None, 180)
    finally:
        if runner.poll() is None:
            request_abort(run, "test cleanup", by="test")
            runner.wait(30)
    assert read_json(run.state_json)["status"] == "finished"
    records = [read_json(p) for p in sorted(run.root.glob("arms/*/*/*/*/phase.json"))]
    paused = [r["paused_s"] for r in records]
    assert max(paused) >= 1.0 and sorted(paused)[0] == 0.0
    step = max(records, key=lambda r: r["paused_s"])
    assert step["stats"]["wall_s"] == pytest.approx(step["wall_clock_s"] - step["pause"]["idle_s"], abs=0.01)
    notes = known_limitations(run, load_run_plan(run).plan)
    assert any("dispatch was paused for" in n and "with nothing in flight is left out of its wall time" in n
               for n in notes), notes  # fmt: skip


async def test_p_in_the_console_pauses_and_continues_a_live_run(tmp_path: Path) -> None:
    from textual.widgets import Static

    from console.app import RunConsole
    from console.screens.logs_screen import LogsScreen

    run = create_run(write_plan(tmp_path, requests=200, concurrency=2, max_tokens=32), tmp_path / "run", tmp_path)
    runner = spawn_detached(run)
    app = RunConsole(run, runner)
    try:
        async with app.run_test(size=(120, 40)) as pilot:

            async def until(predicate, deadline_s: float = 60.0) -> bool:
                return await pilot_until(pilot, predicate, deadline_s)

            assert await until(lambda: app.runner_status.alive and app.view and app.view.current_step())
            # the watchdog panel follows the live guard: its floors (watchdog.json) and a sampled level
            assert await until(lambda: app.watchdog.floors is not None and app.watchdog.level == "ok", 20)
            panel = str(app.query_one("#watchdog").render())
            assert "OK" in panel.upper() and "KILL" in panel.upper()
            await pilot.press("p")
            assert await until(lambda: app.view.paused, 10)
            assert pause_requested(run) is not None
            assert "PAUSED" in str(app.query_one("#title", Static).render())
            await pilot.press("p")
            assert await until(lambda: not app.view.paused, 10)
            assert pause_requested(run) is None and "dispatch_resumed" in event_types(run)
            await pilot.press("l")  # the serve log of the arm being served, followed
            assert isinstance(app.screen, LogsScreen)
            assert await until(lambda: any("engine: serving" in line for line in app.screen._buffer), 10)
            assert app.screen.path == run.serve_dir("split1", "primary") / "serve.log"
            await pilot.press("escape")
            assert not isinstance(app.screen, LogsScreen)
    finally:
        request_abort(run, "test cleanup", by="test")
        runner.wait(60)
