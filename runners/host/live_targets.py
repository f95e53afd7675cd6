"""Serve targets of gb10-console runs that are live on this host now: processes carrying `GB10_RUN_ID`.

A process target's environment carries its run's id (ProcessRuntime sets `GB10_RUN_ID`, and its workers
inherit it) and its ENV sentinel directory (`GB10_ENV_DIR`, inside that run's directory). Reading
`/proc/PID/environ` can block on a process stuck in memory reclaim, so the scan runs in a daemon thread
and returns what it found within its deadline. Processes of another user are not readable without root:
they are not seen (the scan says how many it could not read). Only targets in the scanning process's host
scope count (`runners/host/scope.py`: one scope for every run, unless a test suite splits them).
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from pathlib import Path

from engine.env_sentinel import ENV_DIR_VAR
from runners.host.owner import RUN_ID_VAR
from runners.host.scope import HOST_SCOPE_VAR, own_scope

SCAN_DEADLINE_S = 3.0


@dataclass(frozen=True)
class LiveTarget:
    """One run's live target processes: the run id, its lowest pid, how many, and its run directory's env dir."""

    run_id: str
    pid: int
    processes: int
    env_dir: str | None
    command: str


@dataclass
class LiveScan:
    """What a scan found, and what it could not say (`unreadable` processes, `complete` False on a timeout)."""

    targets: list[LiveTarget] = field(default_factory=list)
    unreadable: int = 0
    complete: bool = True


def _environ(path: Path) -> dict[str, str]:
    out = {}
    for item in path.read_bytes().split(b"\0"):
        key, sep, value = item.partition(b"=")
        if sep and key in (RUN_ID_VAR.encode(), ENV_DIR_VAR.encode(), HOST_SCOPE_VAR.encode()):
            out[key.decode()] = value.decode(errors="replace")
    return out


def _scan(proc: Path, exclude_run: str | None, scope: str, found: dict[str, list[tuple[int, str | None, str]]],
          counts: list[int], lock: threading.Lock) -> None:  # fmt: skip
    for entry in proc.iterdir():
        if not entry.name.isdigit():
            continue
        try:
            env = _environ(entry / "environ")
        except PermissionError:
            counts[0] += 1
            continue
        except OSError:  # gone meanwhile, or a kernel thread
            continue
        run_id = env.get(RUN_ID_VAR)
        if not run_id or run_id == exclude_run or env.get(HOST_SCOPE_VAR, "") != scope:
            continue
        try:
            command = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace").strip()
        except OSError:
            continue
        with lock:  # the caller may read what was found so far while this thread is stuck on a later process
            found.setdefault(run_id, []).append((int(entry.name), env.get(ENV_DIR_VAR), command))


def live_targets(exclude_run: str | None = None, proc: Path = Path("/proc"),
                 deadline_s: float = SCAN_DEADLINE_S) -> LiveScan:  # fmt: skip
    """Every other run's live target processes in this host scope (`exclude_run`: the caller's own run)."""
    found: dict[str, list[tuple[int, str | None, str]]] = {}
    counts = [0]
    lock = threading.Lock()
    worker = threading.Thread(target=_scan, args=(proc, exclude_run, own_scope(), found, counts, lock), daemon=True)
    worker.start()
    worker.join(deadline_s)
    scan = LiveScan(unreadable=counts[0], complete=not worker.is_alive())
    with lock:
        so_far = {run_id: list(procs) for run_id, procs in found.items()}
    for run_id, procs in sorted(so_far.items()):
        pid, env_dir, command = min(procs)
        scan.targets.append(LiveTarget(run_id, pid, len(procs), env_dir, command[:200]))
    return scan
