"""Heartbeats between the runner and the guard: a file each touches, judged by the other's own clock."""

from __future__ import annotations

import time
from pathlib import Path


class Heartbeat:
    """Another process's heartbeat file, judged by when *we* saw its mtime change (monotonic clock).

    Comparing the mtime with our own wall clock would call a live process silent after an NTP step.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self._mtime: float | None = None
        self._changed_at = time.monotonic()

    def silent_for(self) -> float:
        """Seconds since the file last changed (since we started watching, if it never has)."""
        try:
            mtime = self.path.stat().st_mtime
        except OSError:
            mtime = None
        now = time.monotonic()
        if mtime is not None and mtime != self._mtime:
            self._mtime, self._changed_at = mtime, now
        return now - self._changed_at
