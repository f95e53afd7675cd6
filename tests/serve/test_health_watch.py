"""The serve target's /health watched during a step: a flip is reported once, recovery too, stop is prompt."""

from __future__ import annotations

import asyncio
import sys
import time
from pathlib import Path

import pytest

from console.views.run_view import short_duration
from engine.deadlines import timeout
from runners.run.event_types import parse_event
from runners.run.files import read_json, read_jsonl
from runners.run.runs import create_run
from runners.serve.health_watch import watch_health
from runners.serve.readiness import probe
from runners.serve.runtime import ProbeResult
from runners.soak.execute import execute
from runners.testbed.mock_server import MockSettings
from tests.support.plans import write_plan

OK, BAD = ProbeResult(True, 0.001, "/health answered 200"), ProbeResult(False, None, "ConnectError: refused")


@pytest.mark.serial  # 6 probes within 0.5 s
async def test_a_real_server_turning_unhealthy_is_reported_once(start_mock) -> None:
    url = await start_mock(MockSettings(health_fail_after=3))
    changes: list[ProbeResult] = []
    probes = 0

    async def counted() -> ProbeResult:
        nonlocal probes
        probes += 1
        return await probe(url)

    stop = asyncio.Event()
    watch = asyncio.create_task(watch_health(counted, changes.append, stop, every_s=0.02))
    await asyncio.sleep(0.5)
    stop.set()
    async with timeout(5):
        await watch
    assert probes >= 6, probes
    assert [(c.healthy, c.detail) for c in changes] == [(False, "/health answered 503")]


@pytest.mark.serial  # a 1 s bound
async def test_recovery_is_reported_and_stop_ends_the_wait_at_once() -> None:
    answers = iter([OK, BAD, BAD, OK, OK] + [OK] * 1000)
    changes: list[ProbeResult] = []
    stop = asyncio.Event()

    async def scripted() -> ProbeResult:
        return next(answers)

    watch = asyncio.create_task(watch_health(scripted, changes.append, stop, every_s=0.01))
    await asyncio.sleep(0.3)
    stop.set()
    async with timeout(5):
        await watch
    assert [c.healthy for c in changes] == [False, True]

    stop_now = asyncio.Event()
    quick = asyncio.create_task(watch_health(scripted, changes.append, stop_now, every_s=3600))
    t0 = time.monotonic()
    stop_now.set()
    async with timeout(5):
        await quick
    assert time.monotonic() - t0 < 1.0


async def test_a_watch_starts_from_the_last_known_answer() -> None:
    """A step that begins while /health is already failing repeats nothing, and reports the recovery."""
    answers = iter([BAD, BAD, OK] + [OK] * 1000)
    changes: list[ProbeResult] = []
    stop = asyncio.Event()

    async def scripted() -> ProbeResult:
        return next(answers)

    watch = asyncio.create_task(watch_health(scripted, changes.append, stop, every_s=0.01, healthy=False))
    await asyncio.sleep(0.2)
    stop.set()
    async with timeout(5):
        await watch
    assert [c.healthy for c in changes] == [True]


async def test_a_probe_that_raises_reads_as_unhealthy_and_the_watch_goes_on() -> None:
    calls = 0

    async def broken() -> ProbeResult:
        nonlocal calls
        calls += 1
        if calls == 2:
            raise OSError("too many open files")
        return OK

    changes: list[ProbeResult] = []
    stop = asyncio.Event()
    watch = asyncio.create_task(watch_health(broken, changes.append, stop, every_s=0.01))
    await asyncio.sleep(0.2)
    stop.set()
    async with timeout(5):
        await watch
    assert calls > 3 and [c.healthy for c in changes] == [False, True]
    assert changes[0].detail == "the probe itself failed: OSError: too many open files"


async def test_a_soak_step_records_the_target_going_unhealthy_while_up(tmp_path: Path) -> None:
    """A process target (the mock server) whose /health fails mid-step: a serve_health event, the step still
    measured (requests succeed), the console's view shows FAILING."""
    from console.views.run_view import RunView

    command = [sys.executable, "-m", "console.cli", "bench", "mock-server", "--port", "{port}", "--ttft-ms", "20",
               "--itl-ms", "10", "--tokens", "30", "--health-fail-after", "3"]  # fmt: skip
    plan = write_plan(tmp_path, requests=6, concurrency=1, command=command, health_interval_s=0.1)
    plan.write_text(plan.read_text() + "repeats = 2\n")  # two steps per target: the second starts FAILING
    run = create_run(plan, tmp_path / "run", tmp_path)
    result = await execute(run)
    events = read_jsonl(run.events)
    flips = [e for e in events if e["type"] == "serve_health"]
    assert [(e["arm"], e["healthy"]) for e in flips] == [("split1", False), ("split8", False)], flips
    assert flips[0]["arm"] == "split1" and flips[0]["healthy"] is False and "503" in flips[0]["detail"]
    assert [e["step"]["arm"] for e in events if e["type"] == "step_finished"][:1] == ["split1"], result
    limitations = read_json(run.summary_json)["limitations"]
    assert any("/health failed while it was up during split1/primary/replay/0" in x for x in limitations), limitations
    view = RunView(run_id="r")
    for event in events[: events.index(flips[0]) + 1]:
        view.apply(parse_event(event))
    assert view.arms["split1"].health == "FAILING"
    assert view.arms["split1"].health_text(flips[0]["t"] + 61) == "FAILING 1m01s"


def test_short_durations_fit_a_table_cell() -> None:
    assert [short_duration(s) for s in (-3, 0, 42.9, 60, 187, 3599, 3600, 7500, 200_000)] == [
        "0s", "0s", "42s", "1m00s", "3m07s", "59m59s", "1h00m", "2h05m", "55h33m"
    ]  # fmt: skip
