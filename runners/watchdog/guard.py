"""The guard: a small process beside the runner that watches memory and owns the kill path.

`python -m runners.watchdog.guard RUN_DIR --runner-pid PID` is started by the runner in its own
session. It locks itself in memory (best effort), lowers its own OOM score, and then loops:
MemAvailable every 100 ms to 1 s (the policy says how often), a full sample (PSI, the target's
cgroup, NVML) every second, `watchdog.jsonl` every 5 s and on each level change (fsynced),
`watchdog.json` (the current level, for the runner) and the `guard.heartbeat` mtime every second.

It acts only on targets listed in `targets.json` that carry the run's label (targets.py):
- KILL (floor crossed, or predicted within the horizon): the target is killed at once.
- ABORT and WARN: the runner acts (stops dispatch and the target; refuses profiler calls).
- the runner is gone (its pid, checked by start time): the targets are stopped and the guard
  exits; the runner silent for `runner_stale_s` while a target runs: the targets are stopped.
Every action is an event in events.jsonl with the numbers that caused it. SIGTERM ends the guard.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import ctypes
import functools
import os
import signal
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import orjson

from runners import event_loop
from runners.host.meminfo import read_meminfo
from runners.host.owner import process_start_ticks
from runners.plan.load import load_plan
from runners.plan.sections import WatchdogSpec
from runners.run.event_types import (
    Event,
    GuardEndedTarget,
    GuardStarted,
    GuardStopped,
    WatchdogAction,
    WatchdogLevel,
)
from runners.run.events import EventLog
from runners.run.files import JsonlWriter
from runners.run.rundir import RunDir
from runners.run.targets import TargetRef, read_targets
from runners.watchdog.heartbeat import Heartbeat
from runners.watchdog.policy import Decision, Floors, Level, Policy, PolicyConfig, default_floors
from runners.watchdog.samplers import Sample, Sampler
from runners.watchdog.targets import end_target, process_labelled

FULL_SAMPLE_S = 1.0
RECORD_EVERY_S = 5.0
STATUS_EVERY_S = 1.0
PSI_MAX_AGE_S = 3.0  # an older full sample's PSI is not used: it may be frozen
KILL_RETRY_S = 0.5  # while the level stays KILL, a target that still lives is killed again
DRAIN_DEADLINE_S = 5.0
THREAD_STACK = 512 << 10  # the guard's helper threads (mlocked) need little stack
MCL_CURRENT, MCL_FUTURE, MCL_ONFAULT = 1, 2, 4
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
    """Best effort: mlockall and a low oom_score_adj, so the guard is the last to stall or die.

    MCL_ONFAULT locks pages as they are touched instead of populating every future mapping (a new
    thread's whole stack) up front; kernels without it get MCL_CURRENT | MCL_FUTURE.
    """
    out: dict = {"mlocked": False, "oom_score_adj": None}
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        out["mlocked"] = libc.mlockall(MCL_CURRENT | MCL_FUTURE | MCL_ONFAULT) == 0
        if not out["mlocked"]:
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
    """Is the runner alive (pid + start time), and how long has its heartbeat been silent?"""

    pid: int
    start_ticks: int | None
    heartbeat: Heartbeat

    def alive(self) -> bool:
        """False once the runner's pid is gone or belongs to another process."""
        return self.start_ticks is not None and process_start_ticks(self.pid) == self.start_ticks


def _replace_json(path: Path, obj: dict) -> None:
    """Atomic replace without fsync: watchdog.json is a live status, rewritten every second."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_bytes(orjson.dumps(obj, default=str))
    os.replace(tmp, path)


class Guard:
    """The guard loop over one run directory.

    The loop itself only reads /proc/meminfo, decides, and sends SIGKILL; everything that can be
    slow (fsynced records and events, the full sample, label checks, graceful stops, Docker calls)
    runs in tasks and threads beside it, so a slow disk or a hung daemon never delays a kill.
    """

    def __init__(self, run: RunDir, spec: WatchdogSpec, runner: RunnerWatch, sampler: Sampler | None = None):
        self.run_dir = run
        self.run_id = str(run.info()["run_id"])
        self.spec = spec
        self.runner = runner
        self.sampler = sampler or Sampler()
        self.config = policy_config(spec, read_meminfo().total)
        self.policy = Policy(self.config)
        self.events = EventLog(run.events)
        self.records = JsonlWriter(run.watchdog_jsonl)
        self.level = Level.OK
        self.last_full: Sample | None = None
        self._full_at = 0.0  # monotonic time of last_full
        self.last_decision: Decision | None = None
        self.last_kill: dict | None = None
        self._next_record = self._next_status = 0.0
        self._targets: list[TargetRef] = []
        self._verified: set[TargetRef] = set()
        self._killed: dict[TargetRef, float] = {}  # monotonic time of the last SIGKILL per target
        self._ending: asyncio.Task | None = None
        self._tasks: set[asyncio.Task] = set()
        self._writes: asyncio.Queue = asyncio.Queue()
        self._silence_handled = False

    # ---- slow work, off the loop ------------------------------------------------------------

    def _post(self, fn, *args, **kwargs) -> None:
        """Queue a write (record, event, status) for the writer task; never waits."""
        self._writes.put_nowait(functools.partial(fn, *args, **kwargs))

    def _event(self, event: Event) -> None:
        self._post(self.events.emit, event)

    async def _writer(self) -> None:
        """Carry out queued writes in order, in a thread; a failing write is reported, never fatal."""
        while True:
            job = await self._writes.get()
            try:
                await asyncio.to_thread(job)
            except Exception as exc:  # a full disk must not take the guard down
                print(f"guard: write failed: {type(exc).__name__}: {exc}", file=sys.stderr, flush=True)
            finally:
                self._writes.task_done()

    async def _background(self) -> None:
        """Every FULL_SAMPLE_S: the full sample (PSI, the target's cgroup, NVML) and the target list."""
        while True:
            try:
                self._targets = await asyncio.to_thread(read_targets, self.run_dir)
                for ref in self._targets:
                    new = ref not in self._verified and ref.kind == "process" and ref.pid
                    if new and await asyncio.to_thread(process_labelled, ref.pid, ref.start_ticks, self.run_id):
                        self._verified.add(ref)
                self.last_full = await asyncio.to_thread(self.sampler.sample, self._target_pid())
                self._full_at = time.monotonic()
            except Exception as exc:
                print(f"guard: sampling failed: {type(exc).__name__}: {exc}", file=sys.stderr, flush=True)
            await asyncio.sleep(FULL_SAMPLE_S)

    def _target_pid(self) -> int | None:
        return next((ref.pid for ref in self._targets if ref.kind == "process" and ref.pid), None)

    # ---- the loop -----------------------------------------------------------------------------

    async def run(self, stop: asyncio.Event) -> str:
        """Loop until `stop` is set or the runner is gone (after stopping its targets); returns why."""
        writer = asyncio.create_task(self._writer())
        background = asyncio.create_task(self._background())
        self._event(GuardStarted(os.getpid(), self.runner.pid, _floors(self.config.floors), **harden_self()))
        why = "stopped by the runner"
        while not stop.is_set():
            poll = self.config.min_poll_s
            try:
                decision = self._observe()
                poll = decision.next_poll_s
                if decision.level == Level.KILL:
                    await self._kill_targets(decision)
                elif decision.action in ("warn", "abort"):
                    self._event(WatchdogAction(decision.action, **_numbers(decision)))
                if not self.runner.alive():
                    why = "the runner is gone"
                    await self._end_targets_gracefully(f"the runner (pid {self.runner.pid}) is gone")
                    break
                self._check_runner_silence()
                self._write(decision)
            except Exception as exc:  # keep guarding whatever went wrong in one iteration
                print(f"guard: loop error: {type(exc).__name__}: {exc}", file=sys.stderr, flush=True)
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(stop.wait(), min(poll, STATUS_EVERY_S))
        background.cancel()
        if self.last_decision is not None:
            self._write(self.last_decision, force=True)
        self._event(GuardStopped(why))
        await self._drain(writer)
        self.records.close()
        self.events.close()
        return why

    async def _drain(self, writer: asyncio.Task) -> None:
        """Let queued writes finish (bounded), then stop the writer."""
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(self._writes.join(), DRAIN_DEADLINE_S)
        writer.cancel()

    def _observe(self) -> Decision:
        mem = self.sampler.fast()  # the hot path: one read of /proc/meminfo
        fresh = self.last_full is not None and time.monotonic() - self._full_at <= PSI_MAX_AGE_S
        psi = self.last_full.psi.full_avg10 if fresh and self.last_full and self.last_full.psi else None
        decision = self.policy.observe(time.monotonic(), mem.available, psi)  # the wall clock may jump
        if decision.level != self.level:
            self._event(WatchdogLevel(decision.level.label, self.level.label, **_numbers(decision)))
            self._next_record = 0.0  # a level change is always recorded
            self.level = decision.level
        self.last_decision = decision
        return decision

    async def _kill_targets(self, decision: Decision) -> None:
        """At KILL: SIGKILL every labelled target now, and again every KILL_RETRY_S while it lives."""
        now = time.monotonic()
        due = [ref for ref in self._targets if now - self._killed.get(ref, -1e9) >= KILL_RETRY_S]
        if decision.action == "kill" and not self._targets:
            self._event(WatchdogAction("kill", outcome="no serve target is listed", **_numbers(decision)))
        for ref in due:
            self._killed[ref] = now
            if ref.kind == "process":
                outcome = await end_target(ref, self.run_id, kill=True, verified=ref in self._verified)
                self._report_kill(ref, outcome, decision, now)
            else:  # a Docker call may take its deadline: never in the loop
                task = asyncio.create_task(self._kill_container(ref, decision, now))
                self._tasks.add(task)
                task.add_done_callback(self._tasks.discard)

    async def _kill_container(self, ref: TargetRef, decision: Decision, started: float) -> None:
        self._report_kill(ref, await end_target(ref, self.run_id, kill=True), decision, started)

    def _report_kill(self, ref: TargetRef, outcome: str, decision: Decision, started: float) -> None:
        if outcome.startswith("left") and ref in self._verified:
            outcome = f"{outcome} (gone)"
        first = self.last_kill is None or self.last_kill.get("arm") != ref.arm or decision.action == "kill"
        self.last_kill = {
            "t": time.time(),
            "arm": ref.arm,
            "mode": ref.mode,
            "outcome": outcome,
            "reason": decision.reason,
        }
        if first:
            self._event(
                GuardEndedTarget(f"memory KILL: {decision.reason}", True, outcome, _target(ref),
                                 round(time.monotonic() - started, 3), **_numbers(decision))
            )  # fmt: skip
        self._next_status = 0.0

    async def _end_targets_gracefully(self, cause: str) -> None:
        """Stop every listed target (stop, then kill); awaited only when the guard is about to exit."""
        for ref in self._targets or await asyncio.to_thread(read_targets, self.run_dir):
            t0 = time.monotonic()
            try:
                outcome = await end_target(ref, self.run_id, kill=False, verified=ref in self._verified)
            except Exception as exc:
                outcome = f"FAILED: {type(exc).__name__}: {exc}"
            self._event(GuardEndedTarget(cause, False, outcome, _target(ref), round(time.monotonic() - t0, 3)))

    def _check_runner_silence(self) -> None:
        """A runner silent for runner_stale_s while it has a target: stop the target, in the background."""
        silent = self.runner.heartbeat.silent_for()
        if silent < self.spec.runner_stale_s:
            self._silence_handled = False
            return
        if self._silence_handled or not self._targets or (self._ending and not self._ending.done()):
            return
        self._silence_handled = True
        cause = f"the runner has been silent for {silent:.1f} s while its serve target runs"
        self._ending = asyncio.create_task(self._end_targets_gracefully(cause))

    def _write(self, decision: Decision, force: bool = False) -> None:
        now = time.monotonic()
        if force or now >= self._next_record:
            record = {"t": time.time(), "level": decision.level.label, **_numbers(decision)}
            if self.last_full is not None:
                record["sample"] = self.last_full.as_dict()
            self._post(self.records.append, record, sync=True)
            self._next_record = now + RECORD_EVERY_S
        if force or now >= self._next_status or decision.action:
            status = {
                "t": time.time(), "pid": os.getpid(), "level": decision.level.label, "action": decision.action,
                "floors_gib": _floors(self.config.floors), "last_kill": self.last_kill, **_numbers(decision),
            }  # fmt: skip
            self._post(_replace_json, self.run_dir.watchdog_json, status)
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
        spec = load_plan(run.plan_toml, base_dir=run.plan_dir()).plan.watchdog
    except Exception as exc:  # the runner validated this plan; anything here is worth one line
        print(f"guard: cannot read the plan of {run.root}: {exc}", file=sys.stderr)
        return 2
    threading.stack_size(THREAD_STACK)
    runner = RunnerWatch(args.runner_pid, process_start_ticks(args.runner_pid), Heartbeat(run.runner_heartbeat))
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
