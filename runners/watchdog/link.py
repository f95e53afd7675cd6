"""The runner's side of the guard: start it, beat a heartbeat for it, watch its heartbeat, read its level.

The two processes share only files in the run directory: `runner.heartbeat` and `guard.heartbeat`
(their mtimes are the heartbeats), and `watchdog.json` (the guard's current level and numbers).
A guard that exits or goes silent for `guard_stale_s` is reported to the runner, which fails
closed: it stops the target and ends the run (resumable) rather than measure unwatched.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable

from runners.plan.sections import WatchdogSpec
from runners.run.files import read_json
from runners.run.rundir import RunDir
from runners.watchdog.heartbeat import Heartbeat

BEAT_EVERY_S = 1.0
WATCH_EVERY_S = 0.5
ALARM_POLL_S = 0.2
START_DEADLINE_S = 20.0
STOP_DEADLINE_S = 5.0
ALARM_LEVELS = ("abort", "kill")


class GuardError(Exception):
    """The guard could not be started; the message says what to look at."""


class GuardLink:
    """One runner session's guard process."""

    def __init__(self, run: RunDir, spec: WatchdogSpec) -> None:
        self.run = run
        self.spec = spec
        self.proc: subprocess.Popen | None = None
        self._started_at = 0.0
        self.heartbeat = Heartbeat(run.guard_heartbeat)

    def start(self) -> None:
        """Spawn the guard in its own session, output to guard.log."""
        self._started_at = time.time()
        with open(self.run.guard_log, "ab") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "runners.watchdog.guard", str(self.run.root), "--runner-pid", str(os.getpid())],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    async def wait_up(self, deadline_s: float = START_DEADLINE_S) -> None:
        """Return once the guard has beaten its first heartbeat and written its first status; GuardError if it
        exits or is late.

        The status is written by the guard's writer thread after the heartbeat: returning on the heartbeat alone
        let the first serve start read no status (or a previous session's) and report memory as unknown.
        """
        self.beat()
        end = time.monotonic() + deadline_s
        beaten = False
        while time.monotonic() < end:
            if self.proc is not None and self.proc.poll() is not None:
                code = self.proc.returncode
                raise GuardError(f"the guard exited with code {code} at start; see {self.run.guard_log}")
            if not beaten and self._beat_mtime() >= self._started_at:
                self.heartbeat = Heartbeat(self.run.guard_heartbeat)
                beaten = True
            if beaten and self.status() is not None:
                return
            await asyncio.sleep(0.05)
        what = "wrote no status" if beaten else "did not start"
        raise GuardError(f"the guard {what} within {deadline_s:g} s; see {self.run.guard_log}")

    def beat(self) -> None:
        """Touch runner.heartbeat."""
        with contextlib.suppress(OSError):
            self.run.runner_heartbeat.touch()

    async def beat_forever(self) -> None:
        """Touch runner.heartbeat every second until cancelled."""
        while True:
            self.beat()
            await asyncio.sleep(BEAT_EVERY_S)

    def _beat_mtime(self) -> float:
        try:
            return self.run.guard_heartbeat.stat().st_mtime
        except OSError:
            return 0.0

    def lost(self) -> str | None:
        """Why the guard can no longer be trusted, or None while it is alive and beating."""
        if self.proc is None:
            return "the guard was never started"
        if self.proc.poll() is not None:
            return f"the guard exited with code {self.proc.returncode} (see {self.run.guard_log})"
        age = self.heartbeat.silent_for()
        if age > self.spec.guard_stale_s:
            return f"the guard has been silent for {age:.1f} s (limit {self.spec.guard_stale_s:g} s)"
        return None

    async def watch(self, on_lost: Callable[[str], None]) -> None:
        """Call `on_lost(reason)` once if the guard dies or goes silent; runs until cancelled."""
        while True:
            reason = self.lost()
            if reason:
                on_lost(reason)
                return
            await asyncio.sleep(WATCH_EVERY_S)

    def status(self) -> dict | None:
        """This session's guard's latest watchdog.json, or None before it wrote one (a previous session's guard
        left its own: that one is not this guard's word)."""
        try:
            data = read_json(self.run.watchdog_json)
        except (OSError, ValueError):
            return None
        if not isinstance(data, dict) or (self.proc is not None and data.get("pid") != self.proc.pid):
            return None
        return data

    async def wait_alarm(self) -> dict:
        """Return the guard's status as soon as its level is ABORT or KILL."""
        while True:
            status = self.status()
            if status and status.get("level") in ALARM_LEVELS:
                return status
            await asyncio.sleep(ALARM_POLL_S)

    def restart_blocked(self) -> str | None:
        """Why a serve target must not start now, or None: only at level OK with restarts allowed.

        Fails closed: no readable status from the guard is a reason not to start.
        """
        status = self.status()
        if status is None:
            return f"the guard's status ({self.run.watchdog_json}) cannot be read"
        if status.get("restart_allowed") is False or status.get("level") != "ok":
            return f"memory is not above WARN ({status.get('level')}): {status.get('reason')}"
        return None

    async def stop(self) -> int | None:
        """SIGTERM the guard and reap it (SIGKILL after STOP_DEADLINE_S); its exit code."""
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                await asyncio.to_thread(self.proc.wait, STOP_DEADLINE_S)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                await asyncio.to_thread(self.proc.wait, STOP_DEADLINE_S)
        return self.proc.returncode
