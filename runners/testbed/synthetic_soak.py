"""A synthetic soak: the events and guard records a runner and its guard write over a plan's steps, as data.

Pure (no I/O beyond reading a run's own plan in `for_run`): `soak_writer` puts it into a run directory. The
console benchmark attaches the console to it; tests fold it into the console's views.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterator
from dataclasses import dataclass, replace

from engine.units import GIB
from runners.host.cgroup import CgroupMemory
from runners.host.meminfo import MemInfo
from runners.host.psi import Pressure
from runners.plan.steps import StepKey
from runners.replay.metrics import phase_stats
from runners.run.event_types import (
    EnvVerified,
    Event,
    GuardStarted,
    RunStarted,
    ServeReady,
    ServeStarting,
    StepFinished,
    StepProgress,
    StepStarted,
    WatchdogLevel,
)
from runners.run.rundir import RunDir
from runners.run.runs import load_run_plan
from runners.watchdog.policy import FULL_SIZE_FLOORS
from runners.watchdog.samplers import GpuSample, Sample

REQUESTS_PER_STEP = 2000
OUTPUT_TOKENS_PER_REQUEST = 160
GUARD_PID = 4242
RUNNER_PID = 4241


@dataclass
class SyntheticSoak:
    """The events and guard records of a soak over `steps`, shaped as the runner and the guard write them.

    Events (events.jsonl, without `v` and `t`): run_started; guard_started; per arm serve_starting,
    serve_ready and env_verified; per step step_started, `progress_per_step` step_progress (the fields
    of soak._Progress.flush) and step_finished (PhaseStats as the runner writes it); and every
    `level_every` events a watchdog_level (ok -> warn, then back). After the last step it starts over
    (a resumed session), so the stream never ends. Guard records (watchdog.jsonl) carry the decision's
    numbers and a full `Sample.as_dict()`; the status (watchdog.json) carries the floors.
    """

    run_id: str
    plan: str
    arms: list[str]
    steps: list[StepKey]
    progress_per_step: int = 1800
    level_every: int = 3600
    _level: str = "ok"

    @classmethod
    def for_run(cls, run: RunDir, progress_per_step: int = 1800, level_every: int = 3600) -> SyntheticSoak:
        """The soak of `run`'s own plan (so the console's tree and the events agree)."""
        plan = load_run_plan(run).plan
        return cls(
            run_id=str(run.info()["run_id"]), plan=plan.name, arms=[a.name for a in plan.arms], steps=plan.steps(),
            progress_per_step=max(1, progress_per_step), level_every=max(2, level_every),
        )  # fmt: skip

    @staticmethod
    def events_for(total_events: int, steps: int) -> int:
        """progress_per_step so that one pass over `steps` steps holds about `total_events` events."""
        return max(1, math.ceil(total_events / max(1, steps)) - 2)

    def events(self) -> Iterator[Event]:
        """Events forever, in the order a runner writes them."""
        n = 0
        for session in itertools.count():
            for item in self._session(session):
                n += 1
                if n % self.level_every == 0:
                    yield self._level_change()
                yield item

    def _session(self, session: int) -> Iterator[Event]:
        yield RunStarted(
            run_id=self.run_id, plan=self.plan, pid=RUNNER_PID, arms=self.arms, steps=[s.as_dict() for s in self.steps],
            already_done=0 if session == 0 else len(self.steps),
        )  # fmt: skip
        yield GuardStarted(GUARD_PID, RUNNER_PID, _floors(), mlocked=True, oom_score_adj=-900)
        arm = None
        for step in self.steps:
            if step.arm != arm:
                arm = step.arm
                yield from self._serve(step)
            yield from self._step(step)

    def _serve(self, step: StepKey) -> Iterator[Event]:
        pid, url = 5000 + self.arms.index(step.arm), "http://127.0.0.1:8000"
        yield ServeStarting(step.arm, step.mode, "process", {"kind": "process", "pid": None, "base_url": url})
        yield ServeReady(step.arm, step.mode, "tiny", 2.4, pid, None, url)
        split = step.arm.rsplit("-", 1)[-1]
        yield EnvVerified(step.arm, {"CUTE_WO_SPLIT": split}, [])

    def _step(self, step: StepKey) -> Iterator[Event]:
        yield StepStarted(step, "sharegpt", REQUESTS_PER_STEP, 8, open_loop=False)
        for i in range(1, self.progress_per_step + 1):
            done = REQUESTS_PER_STEP * i // self.progress_per_step
            failed = done // 997
            yield StepProgress(
                step=step, total=REQUESTS_PER_STEP, completed=done, failed=failed,
                output_tokens=(done - failed) * OUTPUT_TOKENS_PER_REQUEST,
                ttft_p50_ms=72.8 + (i % 7) * 0.3, ttft_p95_ms=129.6 + (i % 11) * 0.5,
                tpot_p50_ms=8.96 + (i % 5) * 0.01, tpot_p95_ms=10.04 + (i % 3) * 0.02,
                itl_p50_ms=8.91 + (i % 5) * 0.01, itl_p95_ms=11.2 + (i % 3) * 0.02,
                errors={"timeout": failed} if failed else {},
            )  # fmt: skip
        wall = 1800.0
        stats = replace(
            phase_stats([], wall), requests=REQUESTS_PER_STEP, ok=REQUESTS_PER_STEP - 2, failed=2,
            output_tokens=(REQUESTS_PER_STEP - 2) * OUTPUT_TOKENS_PER_REQUEST, req_s=REQUESTS_PER_STEP / wall,
            output_tok_s=(REQUESTS_PER_STEP - 2) * OUTPUT_TOKENS_PER_REQUEST / wall, ttft_p50_ms=73.1,
            ttft_p95_ms=130.2, tpot_p50_ms=8.98, tpot_p95_ms=10.06, itl_p50_ms=8.93, itl_p95_ms=11.21,
            errors={"timeout": 2},
        )  # fmt: skip
        yield StepFinished(step, stats.as_dict())

    def _level_change(self) -> Event:
        previous, self._level = self._level, ("warn" if self._level == "ok" else "ok")
        available = 15.2 if self._level == "warn" else 48.0
        reason = f"MemAvailable {available:.1f} GiB {'below' if self._level == 'warn' else 'above'} WARN 16.0 GiB"
        return WatchdogLevel(self._level, previous, **_numbers(reason, available))

    def guard_record(self, t: float, i: int) -> dict:
        """A watchdog.jsonl record at `t` (the i-th): the decision's numbers and the full sample."""
        available = 48.0 + 4.0 * math.sin(i / 50.0)
        record = {"t": t, "level": "ok", **_numbers(f"MemAvailable {available:.1f} GiB above WARN 16.0 GiB", available)}
        pressure = Pressure(0.12, 0.1, 0.08, 1_000_000 + i, 0.0, 0.0, 0.0, 20_000 + i)
        sample = Sample(
            t=t,
            mem=MemInfo(total=119 * GIB, available=int(available * GIB), swap_free=0, anon=60 * GIB, shmem=GIB,
                        hugetlb=0),
            psi=pressure,
            target=CgroupMemory(version=2, usage_bytes=58 * GIB + i * 4096, limit_bytes=None, oom_kills=0,
                                pressure=pressure),
            gpu=GpuSample(available=True, name="NVIDIA GB10", unified=True, util_pct=96.0 + i % 4,
                          temp_c=61.0 + i % 3, power_w=88.0 + i % 9, sm_clock_mhz=2418, mem_clock_mhz=4266,
                          process_mem_bytes=None, device_mem_total=None),
        )  # fmt: skip
        record["sample"] = sample.as_dict()
        return record

    def guard_status(self, t: float) -> dict:
        """watchdog.json at `t`: the current level, the floors and the decision's numbers."""
        return {
            "t": t, "pid": GUARD_PID, "level": "ok", "action": None, "floors_gib": _floors(), "last_kill": None,
            **_numbers("MemAvailable 48.0 GiB above WARN 16.0 GiB", 48.0),
        }  # fmt: skip


def _floors() -> dict:
    f = FULL_SIZE_FLOORS
    return {"warn": f.warn_gib, "abort": f.abort_gib, "kill": f.kill_gib}


def _numbers(reason: str, available: float) -> dict:
    """The decision's numbers, keyed as the guard writes them (guard._numbers)."""
    return {
        "reason": reason, "available_gib": round(available, 3), "fill_gib_s": 0.0, "seconds_to_kill_floor": None,
        "restart_allowed": True,
    }  # fmt: skip
