"""The host scope: which gb10-console runs on this host see each other's live serve targets.

`GB10_HOST_SCOPE` is unset in normal use: every run is in the one default scope, and the pre-flight
sees every other run's live target, as it always has. A test suite that runs several test processes
at once on one host (pytest-xdist workers) gives each its own scope, so that a worker's runs are not
refused because of another worker's; every process a worker starts inherits it. A process's scope is
the variable's value in its environment (for this process, its current environment, which
/proc/self/environ does not reflect).
"""

from __future__ import annotations

import os
from pathlib import Path

HOST_SCOPE_VAR = "GB10_HOST_SCOPE"


def own_scope() -> str:
    """This process's scope ("" when unset: the default scope)."""
    return os.environ.get(HOST_SCOPE_VAR, "")


def environ_scope(environ: bytes) -> str:
    """The scope a raw /proc/PID/environ block names ("" when it names none)."""
    prefix = f"{HOST_SCOPE_VAR}=".encode()
    for item in environ.split(b"\0"):
        if item.startswith(prefix):
            return item[len(prefix) :].decode(errors="replace")
    return ""


def process_scope(pid: int, proc: Path = Path("/proc")) -> str:
    """The scope of process `pid`; the default scope when its environment cannot be read (another user's,
    or gone), so an unreadable process is judged as it was before scopes existed."""
    if pid == os.getpid() and proc == Path("/proc"):
        return own_scope()
    try:
        return environ_scope((proc / str(pid) / "environ").read_bytes())
    except OSError:
        return ""
