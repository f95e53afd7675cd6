"""Watchdog reaction benchmark: a real memory hog as the target, a real guard process, real floors.

Floors are set just below this host's MemAvailable at the start (WARN −1, ABORT −2, KILL −3 GiB by
default), the hog fills at the given rate, and a 5 ms sampler thread records MemAvailable. The
result is the time from the floor crossing (or, when the guard predicted it, from its KILL
decision) to the hog's death, and how far MemAvailable fell below the KILL floor.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import psutil

from engine.units import GIB
from runners.host.meminfo import read_meminfo
from runners.host.owner import RUN_ID_VAR, process_start_ticks
from runners.plan.load import load_plan
from runners.run.event_types import WatchdogLevel
from runners.run.files import read_jsonl
from runners.run.paths import PROJECT_ROOT
from runners.run.rundir import create_run_dir
from runners.run.targets import TargetRef, write_targets
from runners.watchdog.link import GuardLink

SAMPLE_EVERY_S = 0.005


@dataclass(frozen=True)
class Reaction:
    """One run of the benchmark."""

    rate_gib_s: float
    floors_gib: tuple[float, float, float]
    killed: bool
    predicted: bool
    reaction_s: float | None
    min_available_gib: float
    below_kill_floor_gib: float  # how far MemAvailable went under the KILL floor (0 if never)
    hog_allocated_gib: float
    guard_cpu_s: float


def _plan(floors: tuple[float, float, float] | None, horizon_s: float = 5.0) -> str:
    """A one-arm plan; `floors` (GiB) fill its [watchdog] table, None leaves them sized from the host."""
    table = ""
    if floors is not None:
        warn, abort, kill = floors
        table = (
            f"[watchdog]\nwarn_gib = {warn:.3f}\nabort_gib = {abort:.3f}\nkill_gib = {kill:.3f}\n"
            f"predict_horizon_s = {horizon_s}\n"
        )
    return f"""
name = "watchdog-bench"
[serve]
engine_config = "{PROJECT_ROOT / "configs" / "engine-tiny.toml"}"
{table}
[[arms]]
name = "hog"
[[phases]]
name = "p"
kind = "concurrent"
streams = 1
"""


async def measure(rate_gib_s: float, margins_gib: tuple[float, float, float] = (1.0, 2.0, 3.0),
                  max_gib: float = 6.0, max_s: float = 30.0, workdir: Path | None = None,
                  horizon_s: float = 5.0) -> Reaction:  # fmt: skip
    """Run the hog against a guard once; the floors sit `margins_gib` below the current MemAvailable.

    `horizon_s` 0 switches prediction off (no fill reaches the KILL floor in under 0 s), to measure the
    floor-crossing path.
    """
    available = read_meminfo().available
    if available is None:
        raise RuntimeError("MemAvailable is not readable on this host: the watchdog cannot work here")
    top = available / GIB
    floors = (top - margins_gib[0], top - margins_gib[1], top - margins_gib[2])
    base = Path(workdir or tempfile.mkdtemp(prefix="gb10-wd-bench-"))
    plan_path = base / "plan.toml"
    plan_path.write_text(_plan(floors, horizon_s))
    loaded = load_plan(plan_path)
    run = create_run_dir(base / "run", base, loaded.source, loaded.plan.name, loaded.base_dir)
    run_id = run.info()["run_id"]
    guard = GuardLink(run, loaded.plan.watchdog)
    guard.start()
    beat = asyncio.create_task(guard.beat_forever())
    samples: list[tuple[float, int]] = []
    stop_sampling = threading.Event()
    hog = None
    out = ""
    try:
        await guard.wait_up()
        hog = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "runners.testbed.memhog", "--rate-gib-s", str(rate_gib_s),
            "--max-gib", str(max_gib), "--max-s", str(max_s), "--hold-s", "3",
            env={**os.environ, RUN_ID_VAR: run_id}, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
            start_new_session=True,
        )  # fmt: skip
        ref = TargetRef("process", "hog", "primary", pid=hog.pid, start_ticks=process_start_ticks(hog.pid))
        write_targets(run, [ref])

        def sample() -> None:
            while not stop_sampling.is_set():
                value = read_meminfo().available
                if value is not None:
                    samples.append((time.time(), value))
                time.sleep(SAMPLE_EVERY_S)

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        raw, _ = await asyncio.wait_for(hog.communicate(), max_s + 30)
        died_at = time.time()
        out = raw.decode()
        stop_sampling.set()
        sampler.join(5)
        guard_cpu = _cpu_s(guard.proc.pid) if guard.proc else 0.0
    finally:
        stop_sampling.set()
        if hog is not None and hog.returncode is None:
            hog.kill()
            await asyncio.wait_for(hog.wait(), 10)
        beat.cancel()
        await guard.stop()
    events = read_jsonl(run.events)
    kill_t = next((e["t"] for e in events if e["type"] == WatchdogLevel.TYPE and e.get("level") == "kill"), None)
    kill_floor = floors[2] * GIB
    crossing_t = next((t for t, avail in samples if avail < kill_floor), None)
    killed = hog.returncode == -9 if hog else False
    start_t = crossing_t if crossing_t is not None and (kill_t is None or crossing_t <= kill_t) else kill_t
    lines = [line.split() for line in (out or "").splitlines() if line.strip()]
    minimum = min((avail for _, avail in samples), default=available)
    return Reaction(
        rate_gib_s=rate_gib_s,
        floors_gib=tuple(round(f, 3) for f in floors),  # type: ignore[arg-type]
        killed=killed,
        predicted=kill_t is not None and (crossing_t is None or kill_t < crossing_t),
        reaction_s=None if start_t is None or not killed else round(died_at - start_t, 3),
        min_available_gib=round(minimum / GIB, 3),
        below_kill_floor_gib=round(max(0.0, (kill_floor - minimum) / GIB), 3),
        hog_allocated_gib=round(int(lines[-1][1]) / GIB, 3) if lines else 0.0,
        guard_cpu_s=round(guard_cpu, 3),
    )


async def idle_cpu(seconds: float, workdir: Path | None = None) -> float:
    """The guard's CPU use at steady state (host-sized floors, nothing near them) in % of one core."""
    base = Path(workdir or tempfile.mkdtemp(prefix="gb10-wd-idle-"))
    plan_path = base / "plan.toml"
    plan_path.write_text(_plan(None))
    loaded = load_plan(plan_path)
    run = create_run_dir(base / "run", base, loaded.source, loaded.plan.name, loaded.base_dir)
    guard = GuardLink(run, loaded.plan.watchdog)
    guard.start()
    beat = asyncio.create_task(guard.beat_forever())
    try:
        await guard.wait_up()
        await asyncio.sleep(2.0)  # past start-up (imports, the first NVML attempt)
        assert guard.proc is not None
        before, t0 = _cpu_s(guard.proc.pid), time.monotonic()
        await asyncio.sleep(seconds)
        used, wall = _cpu_s(guard.proc.pid) - before, time.monotonic() - t0
    finally:
        beat.cancel()
        await guard.stop()
    return 100.0 * used / wall


def _cpu_s(pid: int) -> float:
    try:
        times = psutil.Process(pid).cpu_times()
    except psutil.Error:
        return 0.0
    return times.user + times.system


def as_row(r: Reaction) -> dict:
    """A JSON-ready dict of a result."""
    return asdict(r)
