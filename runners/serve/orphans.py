"""Orphan sweep: running containers labelled `gb10.owner` whose runner is dead are stopped and reported.

A container with no `gb10.owner` label, one whose runner still lives, or one started on another
host is never touched.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

from runners.host.docker_api import DockerClient, DockerError, find_socket
from runners.host.owner import LABEL_ARM, LABEL_OWNER, LABEL_RUN, Owner
from runners.host.scope import own_scope, process_scope
from runners.run.event_types import OrphanCheckFailed, OrphanCheckSkipped, OrphansChecked

ORPHAN_STOP_GRACE_S = 10.0
SWEEP_CALL_DEADLINE_S = 5.0


@dataclass(frozen=True)
class OrphanReport:
    """One labelled container the sweep looked at, and what it did."""

    id: str
    name: str
    run_id: str | None
    arm: str | None
    owner: str
    action: str  # "stopped" | "killed (...)" | "left: ..." | "stop failed: ..."

    @property
    def outcome(self) -> str:
        """stopped, failed (it may still run) or left (not ours to touch)."""
        if self.action.startswith("left"):
            return "left"
        return "failed" if self.action.startswith("stop failed") else "stopped"

    def as_dict(self) -> dict:
        """JSON form for events."""
        return asdict(self)


async def sweep_orphans(client: DockerClient, this_host: str | None = None) -> list[OrphanReport]:
    """Stop every running container whose `gb10.owner` runner is dead; `client` must be connected."""
    reports = []
    for item in await client.containers([LABEL_OWNER]):
        labels = item.get("Labels") or {}
        owner_label = labels.get(LABEL_OWNER, "")
        ident = str(item.get("Id"))
        name = (item.get("Names") or ["?"])[0].lstrip("/")
        owner = Owner.parse(owner_label)
        if owner is None:
            action = "left: its gb10.owner label is not HOST/PID/START"
        else:
            alive = owner.alive(this_host)
            if alive is None:
                action = f"left: started by a runner on host {owner.host}"
            elif alive:
                action = f"left: its runner (pid {owner.pid}) is alive"
            else:
                action = await _stop(client, ident)
        reports.append(OrphanReport(ident, name, labels.get(LABEL_RUN), labels.get(LABEL_ARM), owner_label, action))
    return reports


async def _stop(client: DockerClient, ident: str) -> str:
    """Stop with a grace period, then kill; what happened, in words."""
    try:
        await client.stop(ident, ORPHAN_STOP_GRACE_S)
        return "stopped"
    except DockerError as stop_error:
        try:
            await client.kill(ident)
            return f"killed (stop failed: {stop_error})"
        except DockerError as kill_error:
            return f"stop failed: {stop_error}; kill failed: {kill_error}"


async def sweep_at_start(explicit_socket: str | None = None) -> OrphansChecked | OrphanCheckSkipped | OrphanCheckFailed:
    """The runner's start-up sweep, as an event: `orphans_checked`, `orphan_check_skipped` or `_failed`."""
    try:
        socket = find_socket(explicit_socket)
    except DockerError as exc:
        return OrphanCheckSkipped(str(exc))
    try:
        async with DockerClient(socket, SWEEP_CALL_DEADLINE_S) as client:
            await client.connect()
            reports = await sweep_orphans(client)
    except DockerError as exc:
        return OrphanCheckFailed(str(socket), str(exc))
    except Exception as exc:  # never let the sweep keep a soak from starting
        return OrphanCheckFailed(str(socket), f"{type(exc).__name__}: {exc}")
    by_outcome: dict[str, list[dict]] = {"stopped": [], "failed": [], "left": []}
    for report in reports:
        by_outcome[report.outcome].append(report.as_dict())
    return OrphansChecked(str(socket), **by_outcome)


@dataclass(frozen=True)
class LiveContainer:
    """A running container of another run whose runner is alive (the sweep leaves it; a new run must wait)."""

    name: str
    run_id: str | None
    arm: str | None
    owner: str


async def live_run_containers(exclude_run: str | None = None, explicit_socket: str | None = None
                              ) -> list[LiveContainer]:  # fmt: skip
    """Running `gb10.owner`-labelled containers whose runner lives on this host in this host scope (not
    `exclude_run`'s); none when no Docker socket answers (a host without Docker has none to find)."""
    try:
        socket = find_socket(explicit_socket)
        async with DockerClient(socket, SWEEP_CALL_DEADLINE_S) as client:
            await client.connect()
            items = await client.containers([LABEL_OWNER])
    except DockerError:
        return []
    out, scope = [], own_scope()
    for item in items:
        labels = item.get("Labels") or {}
        owner = Owner.parse(labels.get(LABEL_OWNER, ""))
        if owner is None or labels.get(LABEL_RUN) == exclude_run or not owner.alive():
            continue
        if process_scope(owner.pid) != scope:  # a runner's containers are in its scope
            continue
        name = (item.get("Names") or ["?"])[0].lstrip("/")
        out.append(LiveContainer(name, labels.get(LABEL_RUN), labels.get(LABEL_ARM), owner.label))
    return out
