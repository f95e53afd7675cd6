"""Processes a test session started that outlive it, found by the host scope every one of them inherits.

Each test session (each pytest-xdist worker) runs in its own host scope (`runners/host/scope.py`), and the
processes its tests start inherit it with the rest of the environment, as well as PYTEST_CURRENT_TEST, the
test that was running when they started. At the end of the session, any process still carrying the scope
is a leak: the session fails with who they are and which test started them, and they are killed.
"""

from __future__ import annotations

import contextlib
import os
import signal
import time
from dataclasses import dataclass
from pathlib import Path

from runners.host.scope import environ_scope

LEAK_GRACE_S = 10.0  # processes being stopped as the session ends (a SIGKILL not yet delivered) may still show
CURRENT_TEST = b"PYTEST_CURRENT_TEST="


@dataclass(frozen=True)
class LeakedProcess:
    """A process of the session still running: its pid, command line and the test that started it."""

    pid: int
    command: str
    test: str

    def __str__(self) -> str:
        return f"pid {self.pid} ({self.command[:160]}), started during {self.test}"


def scoped_processes(scope: str, proc: Path = Path("/proc")) -> list[LeakedProcess]:
    """Every process but this one whose environment names `scope` (zombies have none, so they are not seen)."""
    found = []
    for entry in proc.iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            environ = (entry / "environ").read_bytes()
            if environ_scope(environ) != scope:
                continue
            command = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace").strip()
        except OSError:  # gone meanwhile, or not readable
            continue
        test = next((item[len(CURRENT_TEST) :] for item in environ.split(b"\0") if item.startswith(CURRENT_TEST)), b"")
        found.append(LeakedProcess(int(entry.name), command, test.decode(errors="replace") or "session set-up"))
    return found


def reap_leaks(scope: str, grace_s: float = LEAK_GRACE_S) -> list[LeakedProcess]:
    """The processes of `scope` still running after `grace_s`, each then killed (SIGKILL)."""
    end = time.monotonic() + grace_s
    leaked = scoped_processes(scope)
    while leaked and time.monotonic() < end:
        time.sleep(0.2)
        leaked = scoped_processes(scope)
    for process in leaked:
        with contextlib.suppress(ProcessLookupError):
            os.kill(process.pid, signal.SIGKILL)
    return leaked
