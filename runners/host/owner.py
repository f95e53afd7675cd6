"""Who owns a container: the `gb10.*` labels the runner puts on everything it starts.

`gb10.owner` is `HOST/PID/START` (the runner's host name, pid and the pid's start time in clock
ticks since boot), so a reused pid is never mistaken for the runner that started a container.
"""

from __future__ import annotations

import os
import socket
from dataclasses import dataclass
from pathlib import Path

LABEL_OWNER = "gb10.owner"
LABEL_RUN = "gb10.run-id"
LABEL_ARM = "gb10.arm"
LABEL_MODE = "gb10.mode"
RUN_ID_VAR = "GB10_RUN_ID"  # a serve process's label: its environment carries the run id


def process_start_ticks(pid: int, proc: Path = Path("/proc")) -> int | None:
    """Field 22 of /proc/PID/stat (start time in clock ticks since boot), or None if pid is gone."""
    try:
        stat = (proc / str(pid) / "stat").read_text()
    except OSError:
        return None
    fields = stat[stat.rindex(")") + 2 :].split()  # the command name may hold spaces and parentheses
    return int(fields[19])


@dataclass(frozen=True)
class Owner:
    """A runner process identified across pid reuse."""

    host: str
    pid: int
    start_ticks: int

    @property
    def label(self) -> str:
        """The `gb10.owner` label value."""
        return f"{self.host}/{self.pid}/{self.start_ticks}"

    @classmethod
    def parse(cls, label: str) -> Owner | None:
        """The owner a label names, or None when the label is not in HOST/PID/START form."""
        host, _, rest = label.rpartition("/")
        host, _, pid = host.rpartition("/")
        if not host or not pid.isdigit() or not rest.isdigit():
            return None
        return cls(host, int(pid), int(rest))

    def alive(self, this_host: str | None = None, proc: Path = Path("/proc")) -> bool | None:
        """True/False for a runner on this host; None when it ran on another host (cannot tell)."""
        if self.host != (this_host or socket.gethostname()):
            return None
        ticks = process_start_ticks(self.pid, proc)
        if ticks is not None:
            return ticks == self.start_ticks
        if proc != Path("/proc"):
            return False
        try:  # /proc hidden (hidepid): a process we may not signal still exists, so count it alive
            os.kill(self.pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            return True
        return False


def this_runner() -> Owner:
    """The owner label of the current process."""
    pid = os.getpid()
    return Owner(socket.gethostname(), pid, process_start_ticks(pid) or 0)


def run_labels(run_id: str, arm: str, mode: str, owner: Owner) -> dict[str, str]:
    """The labels every container the runner creates carries."""
    return {LABEL_RUN: run_id, LABEL_ARM: arm, LABEL_MODE: mode, LABEL_OWNER: owner.label}
