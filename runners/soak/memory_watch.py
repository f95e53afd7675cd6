"""What the memory guard allows during a serve target's life, as the session and its steps ask it.

The alarm task ends as soon as the guard's level is ABORT or KILL; a step, a readiness wait or a
profiler stop that sees it done stops what it was doing. Without a guard (tests of the session
alone) nothing is ever refused.
"""

from __future__ import annotations

import asyncio
import time

from runners.run.event_types import RestartAllowed, RestartBlocked
from runners.run.events import EventLog
from runners.watchdog.link import GuardLink

RECOVERY_POLL_S = 1.0


def alarm_reason(status: dict) -> str:
    """The words a step fails with when the memory watchdog stopped its target."""
    level = str(status.get("level", "?")).upper()
    return f"memory watchdog {level}: {status.get('reason')}; `--resume` repeats this step once memory recovers"


class MemoryWatch:
    """The guard link plus the alarm task of the target that is up now."""

    def __init__(self, guard: GuardLink | None) -> None:
        self.guard = guard
        self.alarm: asyncio.Task[dict] | None = None

    def arm(self) -> None:
        """Watch for ABORT/KILL from now on (a target is about to start: loading a model is its biggest fill)."""
        self.alarm = asyncio.create_task(self.guard.wait_alarm()) if self.guard else None

    def disarm(self) -> None:
        """Stop watching (the target is being stopped)."""
        if self.alarm is not None:
            self.alarm.cancel()
            self.alarm = None

    def tasks(self) -> set[asyncio.Task]:
        """The alarm task as a set to add to `asyncio.wait`, empty without one."""
        return {self.alarm} if self.alarm is not None else set()

    def reason(self, target_died: bool = False, since: float = 0.0, arm: str | None = None) -> str | None:
        """Why the memory watchdog stopped this target, or None.

        ABORT (or KILL) seen by the alarm: the runner stops the target. A target that died is the
        watchdog's doing only if the guard recorded killing `arm`'s target after `since`.
        """
        alarm = self.alarm
        status = alarm.result() if alarm is not None and alarm.done() and not alarm.cancelled() else None
        if status is None and target_died and self.guard is not None:
            kill = (self.guard.status() or {}).get("last_kill") or {}
            if kill.get("t", 0) >= since and kill.get("arm") == arm:
                status = {"level": "kill", "reason": f"{kill.get('reason')} ({kill.get('outcome')})"}
        return None if status is None else alarm_reason(status)

    async def recovered(self, wait_s: float, events: EventLog) -> str | None:
        """Wait while the guard blocks restarts (memory below WARN after an action); a reason if it never clears."""
        if self.guard is None or not self.guard.restart_blocked():
            return None
        events.emit(RestartBlocked(self.guard.restart_blocked(), wait_s))
        end = time.monotonic() + wait_s
        while time.monotonic() < end:
            await asyncio.sleep(RECOVERY_POLL_S)
            if not self.guard.restart_blocked():
                events.emit(RestartAllowed())
                return None
        return f"not started: {self.guard.restart_blocked()} (waited {wait_s:g} s)"
