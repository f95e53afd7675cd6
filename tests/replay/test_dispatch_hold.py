"""The stall watch's hold on dispatch (issue 31): dispatch waits on it beside the operator's pause, but a hold is
not a pause (no schedule shift, no `during_pause` mark, its time stays in each waiting request's dispatch lag)."""

from __future__ import annotations

import asyncio

import pytest

from runners.replay.dispatch import Arrivals
from runners.replay.dispatch_gate import DispatchGate, wait_all_open
from runners.replay.prompts import builtin_conversations
from runners.testbed.mock_server import MockSettings
from tests.support.mock import StartMock
from tests.support.replay import run_replay


async def test_wait_all_open_returns_only_when_every_gate_is_open_at_once_or_on_abort() -> None:
    pause, hold, abort = DispatchGate(), DispatchGate(), asyncio.Event()
    await asyncio.wait_for(wait_all_open((pause, hold), abort), 1.0)  # both open: at once
    pause.pause()
    hold.pause()
    waiter = asyncio.create_task(wait_all_open((pause, hold), abort))
    await asyncio.sleep(0.05)
    pause.resume()
    await asyncio.sleep(0.05)
    assert not waiter.done()  # the hold still closed
    pause.pause()
    hold.resume()
    await asyncio.sleep(0.05)
    assert not waiter.done()  # the pause closed again before the hold opened
    pause.resume()
    await asyncio.wait_for(waiter, 1.0)
    hold.pause()
    waiter = asyncio.create_task(wait_all_open((pause, hold), abort))
    abort.set()
    await asyncio.wait_for(waiter, 1.0)  # an abort never waits for a held gate


@pytest.mark.parametrize(
    "arrivals", [Arrivals(2), Arrivals(100, offsets=[0.0, 0.05, 0.1, 0.15])], ids=["closed", "open"]
)
@pytest.mark.serial  # a 0.4 s hold measured against the replay's clock
async def test_nothing_is_sent_while_held_and_the_hold_stays_in_the_dispatch_lag(
    start_mock: StartMock, arrivals: Arrivals
) -> None:
    url = await start_mock(MockSettings(ttft_ms=5, itl_ms=1, tokens=4))
    hold, pause = DispatchGate(), DispatchGate()
    hold.pause()
    task = asyncio.create_task(run_replay(url, builtin_conversations()[:4], arrivals, gate=pause, hold=hold))
    await asyncio.sleep(0.4)
    assert not task.done()
    hold.resume()
    outcome, seen = await asyncio.wait_for(task, 10.0)
    assert [r.status for r in outcome.records] == ["ok"] * 4 and outcome.pauses == ()
    [(start, end)] = outcome.holds
    assert start == 0.0 and 0.35 <= end <= outcome.wall_s
    assert all(r.sent_ns >= 0.35e9 for r in seen)  # nothing went out while held
    assert not any(r.during_pause for r in seen)  # their latencies count: the hold was the engine's wait
    first = sorted(seen, key=lambda r: r.scheduled_ns)[:2]
    assert all(r.scheduled_ns < 0.2e9 for r in first)  # scheduled before the hold ended: the lag shows it
    assert all(r.sent_ns - r.scheduled_ns >= 0.2e9 for r in first)
