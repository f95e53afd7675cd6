"""The guard: a small process beside the runner that watches memory and owns the kill path.

`python -m runners.watchdog.guard RUN_DIR --runner-pid PID` is started by the runner in its own
session. It locks itself in memory (best effort), lowers its own OOM score, and then loops:
MemAvailable every 100 ms to 1 s (the policy says how often), a full sample (PSI, the target's
cgroup, NVML) every second, `watchdog.jsonl` every 5 s and on each level change (fsynced),
`watchdog.json` (the current level, for the runner) and the `guard.heartbeat` mtime every second.

It acts only on targets listed in `targets.json` that carry the run's label (targets.py):
- KILL (floor crossed, or predicted within the horizon): the target is killed at once.
- ABORT and WARN: the runner acts (stops dispatch and the target; refuses profiler calls).
- the runner is gone (its pid, checked by start time) or silent for `runner_stale_s` during a
  step: the target is stopped, and once the runner is gone the guard exits.
Every action is an event in events.jsonl with the numbers that caused it. SIGTERM ends the guard.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import ctypes
import os
import signal
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from runners import event_loop
from runners.events import EventLog
from runners.files import JsonlWriter, read_json, write_json_atomic
from runners.plan import WatchdogSpec, load_plan
from runners.rundir import RunDir
from runners.serve.owner import process_start_ticks
from runners.watchdog.policy import Decision, Floors, Level, Policy, PolicyConfig, default_floors
from runners.watchdog.samplers import Sample, Sampler, read_meminfo
from runners.watchdog.targets import TargetRef, end_target, read_targets

FULL_SAMPLE_S = 1.0
RECORD_EVERY_S = 5.0
STATUS_EVERY_S = 1.0
MCL_CURRENT, MCL_FUTURE = 1, 2
GUARD_OOM_SCORE_ADJ = -900


def policy_config(spec: WatchdogSpec, mem_total: int | None) -> PolicyConfig:
    """The policy a plan's [watchdog] table asks for on a host with `mem_total` bytes."""
    if spec.warn_gib is not None and spec.abort_gib is not None and spec.kill_gib is not None:
        floors = Floors(spec.warn_gib, spec.abort_gib, spec.kill_gib)
    else:
        floors = default_floors(mem_total)
    return PolicyConfig(
        floors=floors,
        predict_horizon_s=spec.predict_horizon_s,
        psi_full_avg10_abort=spec.psi_full_avg10_abort,
        post_action_delay_s=spec.post_action_delay_s,
    )


def harden_self() -> dict:
    """Best effort: mlockall and a low oom_score_adj, so the guard is the last to stall or die."""
    out: dict = {"mlocked": False, "oom_score_adj": None}
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        out["mlocked"] = libc.mlockall(MCL_CURRENT | MCL_FUTURE) == 0
        if not out["mlocked"]:
            out["mlock_error"] = os.strerror(ctypes.get_errno())
    except (OSError, AttributeError) as exc:
        out["mlock_error"] = str(exc)
    try:
        Path("/proc/self/oom_score_adj").write_text(str(GUARD_OOM_SCORE_ADJ))
        out["oom_score_adj"] = GUARD_OOM_SCORE_ADJ
    except OSError as exc:
        out["oom_score_adj_error"] = exc.strerror or str(exc)
    return out


@dataclass
class RunnerWatch:
    """Is the runner alive (pid + start time), and when did it last touch its heartbeat?"""

    pid: int
    start_ticks: int | None
    heartbeat: Path

    def alive(self) -> bool:
        """False once the runner's pid is gone or belongs to another process."""
        return self.start_ticks is not None and process_start_ticks(self.pid) == self.start_ticks

    def silent_for(self, now: float) -> float:
        """Seconds since the runner's last heartbeat (infinite without one)."""
        try:
            return now - self.heartbeat.stat().st_mtime
        except OSError:
            return float("inf")


class Guard:
    """The guard loop over one run directory."""

    def __init__(self, run: RunDir, spec: WatchdogSpec, runner: RunnerWatch, sampler: Sampler | None = None):
        self.run_dir = run
        self.run_id = str(run.info()["run_id"])
        self.spec = spec
        self.runner = runner
        self.sampler = sampler or Sampler()
        mem_total = read_meminfo().total
        self.config = policy_config(spec, mem_total)
        self.policy = Policy(self.config)
        self.events = EventLog(run.events)
        self.records = JsonlWriter(run.watchdog_jsonl)
        self.level = Level.OK
        self.last_full: Sample | None = None
        self.last_decision: Decision | None = None
        self._next_record = self._next_status = 0.0
        self._runner_stopped_target = False

    async def run(self, stop: asyncio.Event) -> str:
        """Loop until `stop` is set or the runner is gone (after stopping its targets); returns why."""
        self.events.emit(
            "guard_started", pid=os.getpid(), floors_gib=_floors(self.config.floors), runner_pid=self.runner.pid,
            **harden_self(),
        )  # fmt: skip
        why = "stopped by the runner"
        full = asyncio.create_task(self._sample_fully())
        while not stop.is_set():
            now = time.time()
            decision = self._observe(now)
            if decision.action == "kill":
                await self._end_targets(kill=True, cause=f"memory KILL: {decision.reason}", decision=decision)
            elif decision.action in ("warn", "abort"):
                self.events.emit("watchdog_action", action=decision.action, **_numbers(decision))
            if not self.runner.alive():
                await self._end_targets(kill=False, cause=f"the runner (pid {self.runner.pid}) is gone")
                why = "the runner is gone"
                break
            await self._check_runner_silence(now)
            self._write(now, decision)
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(stop.wait(), min(decision.next_poll_s, STATUS_EVERY_S))
        full.cancel()
        self._write(time.time(), self.last_decision, force=True)
        self.events.emit("guard_stopped", reason=why)
        self.records.close()
        self.events.close()
        return why

    async def _sample_fully(self) -> None:
        """Every FULL_SAMPLE_S: PSI, the target's cgroup and NVML, in a thread (NVML may take its timeout)."""
        while True:
            self.last_full = await asyncio.to_thread(self.sampler.sample, self._target_pid())
            await asyncio.sleep(FULL_SAMPLE_S)

    def _observe(self, now: float) -> Decision:
        mem = self.sampler.fast()  # the hot path: one read of /proc/meminfo
        psi = self.last_full.psi.full_avg10 if self.last_full and self.last_full.psi else None
        decision = self.policy.observe(time.monotonic(), mem.available, psi)  # the wall clock may jump
        if decision.level != self.level:
            self.events.emit(
                "watchdog_level", level=decision.level.label, previous=self.level.label, **_numbers(decision)
            )
            self._next_record = 0.0  # a level change is always recorded
            self.level = decision.level
        self.last_decision = decision
        return decision

    def _target_pid(self) -> int | None:
        for ref in read_targets(self.run_dir):
            if ref.kind == "process" and ref.pid:
                return ref.pid
        return None

    async def _check_runner_silence(self, now: float) -> None:
        silent = self.runner.silent_for(now)
        if silent < self.spec.runner_stale_s:
            self._runner_stopped_target = False
            return
        if self._runner_stopped_target or not self._in_step():
            return
        self._runner_stopped_target = True
        await self._end_targets(kill=False, cause=f"the runner has been silent for {silent:.1f} s during a step")

    def _in_step(self) -> bool:
        try:
            return bool(read_json(self.run_dir.state_json).get("current"))
        except (OSError, ValueError):
            return True  # unknown: assume the worst

    async def _end_targets(self, kill: bool, cause: str, decision: Decision | None = None) -> None:
        t0 = time.monotonic()
        for ref in read_targets(self.run_dir):
            outcome = await end_target(ref, self.run_id, kill)
            self.events.emit(
                "guard_ended_target", cause=cause, kill=kill, outcome=outcome, target=_target(ref),
                took_s=round(time.monotonic() - t0, 3), **(_numbers(decision) if decision else {}),
            )  # fmt: skip

    def _write(self, now: float, decision: Decision | None, force: bool = False) -> None:
        if decision is None:
            return
        if force or now >= self._next_record:
            record = {"t": now, "level": decision.level.label, **_numbers(decision)}
            if self.last_full is not None:
                record["sample"] = self.last_full.as_dict()
            self.records.append(record, sync=True)
            self._next_record = now + RECORD_EVERY_S
        if force or now >= self._next_status or decision.action:
            status = {
                "t": now, "pid": os.getpid(), "level": decision.level.label, "action": decision.action,
                "floors_gib": _floors(self.config.floors), **_numbers(decision),
            }  # fmt: skip
            write_json_atomic(self.run_dir.watchdog_json, status)
            self._next_status = now + STATUS_EVERY_S
        with contextlib.suppress(OSError):
            self.run_dir.guard_heartbeat.touch()


def _floors(floors: Floors) -> dict:
    return {"warn": floors.warn_gib, "abort": floors.abort_gib, "kill": floors.kill_gib}


def _numbers(decision: Decision) -> dict:
    return {
        "reason": decision.reason,
        "available_gib": decision.available_gib,
        "fill_gib_s": None if decision.fill_gib_s is None else round(decision.fill_gib_s, 3),
        "seconds_to_kill_floor": None
        if decision.seconds_to_kill_floor is None
        else round(decision.seconds_to_kill_floor, 2),
        "restart_allowed": decision.restart_allowed,
    }


def _target(ref: TargetRef) -> dict:
    return {"kind": ref.kind, "arm": ref.arm, "mode": ref.mode, "pid": ref.pid, "container": ref.container}


def main(argv: list[str] | None = None) -> int:
    """Entry point of the guard process."""
    parser = argparse.ArgumentParser(prog="python -m runners.watchdog.guard")
    parser.add_argument("run_dir", type=Path)
    parser.add_argument("--runner-pid", type=int, required=True)
    args = parser.parse_args(argv)
    run = RunDir(args.run_dir)
    try:
        spec = load_plan(run.plan_toml, base_dir=Path(run.info()["plan_dir"])).plan.watchdog
    except Exception as exc:  # the runner validated this plan; anything here is worth one line
        print(f"guard: cannot read the plan of {run.root}: {exc}", file=sys.stderr)
        return 2
    runner = RunnerWatch(args.runner_pid, process_start_ticks(args.runner_pid), run.runner_heartbeat)
    guard = Guard(run, spec, runner)

    async def go() -> str:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        return await guard.run(stop)

    print(f"guard: {event_loop.run(go())}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
