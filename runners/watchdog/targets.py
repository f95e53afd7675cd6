"""The guard's stop/kill path for the serve targets a run lists in `targets.json` (runners.run.targets).

The runner lists each target it starts; the guard acts only on a listed target that still
carries the run's label: a container labelled `gb10.run-id=<run id>`, or a process started at the
recorded time whose environment holds `GB10_RUN_ID=<run id>`. Anything else is never touched,
however it got into the list.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
from pathlib import Path

from runners.host.docker_api import DockerClient, DockerError
from runners.host.owner import LABEL_RUN, RUN_ID_VAR, process_start_ticks
from runners.run.targets import TargetRef

DOCKER_CALL_S = 3.0
PROCESS_GRACE_S = 5.0


def process_labelled(pid: int, start_ticks: int | None, run_id: str, proc: Path = Path("/proc")) -> bool:
    """True when `pid` is the process started at `start_ticks` and its env carries GB10_RUN_ID=run_id."""
    if start_ticks is None or process_start_ticks(pid, proc) != start_ticks:
        return False
    try:
        environ = (proc / str(pid) / "environ").read_bytes()
    except OSError:
        return False
    return f"{RUN_ID_VAR}={run_id}".encode() in environ.split(b"\0")


async def end_target(ref: TargetRef, run_id: str, kill: bool, verified: bool = False) -> str:
    """Stop (or, with `kill`, SIGKILL at once) a labelled target; returns what happened, in words.

    `verified`: the process's label was checked earlier (reading /proc/PID/environ can block on a
    process stuck in reclaim, so the guard checks it when the target appears, not in an emergency);
    then only the start time is checked, and the group is signalled even when its leader is gone
    (its workers may still hold memory).
    """
    if ref.kind == "process" and ref.pid is not None:
        if not verified and not process_labelled(ref.pid, ref.start_ticks, run_id):
            return f"left: pid {ref.pid} is gone or not labelled {RUN_ID_VAR}={run_id}"
        return await _end_process(ref.pid, ref.start_ticks, kill)
    if ref.kind == "docker" and ref.container and ref.socket:
        return await _end_container(ref.container, Path(ref.socket), run_id, kill)
    return f"left: not a target the guard can end ({ref.kind})"


async def _end_process(pid: int, start_ticks: int | None, kill: bool) -> str:
    ticks = process_start_ticks(pid)
    if ticks is not None and ticks != start_ticks:
        # the pid belongs to a newer process, so the old group is empty: Linux never hands out a
        # pid that is still some group's id
        return f"left: pid {pid} now belongs to another process"
    leader = "" if ticks is not None else " (its leader was already gone)"
    if kill:
        _signal_group(pid, signal.SIGKILL)
        return f"killed process group {pid}{leader}"
    _signal_group(pid, signal.SIGTERM)
    for _ in range(int(PROCESS_GRACE_S / 0.1)):
        await asyncio.sleep(0.1)
        if _group_gone(pid):
            return f"stopped process group {pid} (SIGTERM){leader}"
    _signal_group(pid, signal.SIGKILL)
    return f"killed process group {pid} after {PROCESS_GRACE_S:g} s of SIGTERM{leader}"


def _group_gone(pgid: int) -> bool:
    """True once no live member of process group `pgid` is left (zombies do not count)."""
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return _gone(pgid, process_start_ticks(pgid)) and not _live_member(pgid)


def _live_member(pgid: int, proc: Path = Path("/proc")) -> bool:
    for entry in proc.iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        fields = stat[stat.rindex(")") + 2 :].split()
        if fields[0] != "Z" and fields[2] == str(pgid):
            return True
    return False


def _gone(pid: int, start_ticks: int | None, proc: Path = Path("/proc")) -> bool:
    """True once `pid` no longer runs: gone, reused, or a zombie its parent has not reaped yet."""
    if process_start_ticks(pid, proc) != start_ticks:
        return True
    try:
        stat = (proc / str(pid) / "stat").read_text()
    except OSError:
        return True
    return stat[stat.rindex(")") + 2 :].startswith("Z")


def _signal_group(pid: int, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, sig)


async def _end_container(ident: str, socket: Path, run_id: str, kill: bool) -> str:
    try:
        async with DockerClient(socket, DOCKER_CALL_S) as client:
            await client.connect()
            data = await client.inspect(ident)
            labels = (data.get("Config") or {}).get("Labels") or {}
            if labels.get(LABEL_RUN) != run_id:
                return f"left: container {ident[:12]} is not labelled {LABEL_RUN}={run_id}"
            if not (data.get("State") or {}).get("Running"):
                return f"container {ident[:12]} is not running"
            if kill:
                await client.kill(ident)
                return f"killed container {ident[:12]}"
            await client.stop(ident, PROCESS_GRACE_S)
            return f"stopped container {ident[:12]}"
    except DockerError as exc:
        if not kill:
            return await _end_container(ident, socket, run_id, kill=True) + f" (stop failed: {exc})"
        return f"FAILED to end container {ident[:12]}: {exc}"
