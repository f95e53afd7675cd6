"""Ending a serve container, harder at each step, and naming how it ended.

The escalation: the API's stop with a grace period; on any failure the API's kill under a deadline; on
failure `docker kill` (or `podman kill`) on the same socket as a subprocess under a timeout; then the
daemon is asked whether the container still runs. Every step has a deadline, so none can hang the
runner, and a container that may still run is said in words, with how to kill it by hand.
"""

from __future__ import annotations

import asyncio
import shutil
from dataclasses import dataclass
from pathlib import Path

from runners.host.docker_api import DockerClient, DockerError
from runners.serve.runtime import OOM_KILLED, ExitInfo

SIGNAL_EXIT = {137: "SIGKILL", 143: "SIGTERM", 130: "SIGINT", 134: "SIGABRT", 139: "SIGSEGV"}


def classify_exit(state: dict, stopping: str | None, oom_kills: int | None) -> ExitInfo:
    """How a container ended, from its inspect State, what the runner was doing, and cgroup OOM kills."""
    code = state.get("ExitCode")
    notes = []
    if state.get("OOMKilled"):
        notes.append("OOMKilled=true")
    if oom_kills:
        notes.append(f"cgroup oom_kill {oom_kills}")
    if state.get("Error"):
        notes.append(f"error: {state['Error']}")
    if state.get("OOMKilled"):
        how = OOM_KILLED
    elif stopping == "terminated" and code == 137:
        how = "killed after the stop grace period (it ignored its stop signal)"
    elif stopping:
        how = stopping
    elif code in SIGNAL_EXIT:
        how = f"killed by {SIGNAL_EXIT[code]} from outside the runner"
    else:
        how = "exited"
    return ExitInfo(code if isinstance(code, int) else None, how, "; ".join(notes))


@dataclass(frozen=True)
class StopEscalation:
    """The ways to end one container, each harder than the last, and the daemon's word on whether it ended."""

    client: DockerClient
    container_id: str
    name: str
    kill_s: float  # the API's kill (the daemon waits for the exit before answering)
    cli_kill_s: float  # `docker kill` as a subprocess

    async def stop(self, grace_s: float) -> str | None:
        """The API's stop: the container's stop signal, SIGKILL after `grace_s`; None when the daemon took it,
        else why not (the caller escalates to `kill`)."""
        try:
            await self.client.stop(self.container_id, grace_s)
        except DockerError as exc:
            return f"stop: {exc}"
        return None

    async def kill(self) -> str | None:
        """SIGKILL through the API, else through the CLI; None when either took it, else what both said and
        what to do by hand (the words of a ServeError, unless `ended` finds the container gone after all)."""
        try:
            await self.client.kill(self.container_id, deadline_s=self.kill_s)
        except DockerError as api_error:
            cli_error = await self.cli_kill()
            if cli_error:
                short = self.container_id[:12]
                return (
                    f"could not kill container {self.name} ({short}): API: {api_error}; "
                    f"CLI: {cli_error}. It may still be running and holding memory: kill it by hand "
                    f"(`docker kill {short}`) and check the daemon (`systemctl status docker`)"
                )
        return None

    async def cli_kill(self) -> str | None:
        """`docker kill ID` (or `podman kill`) on the same socket under a timeout; None on success."""
        order = ("podman", "docker") if self.client.is_podman else ("docker", "podman")
        cli = next((path for path in map(shutil.which, order) if path), None)
        if cli is None:
            return "neither docker nor podman is on PATH"
        name = Path(cli).name
        socket = f"unix://{self.client.socket}"
        argv = [cli, "--url", socket] if name == "podman" else [cli, "-H", socket]
        try:
            proc = await asyncio.create_subprocess_exec(
                *argv, "kill", self.container_id, stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE
            )
        except OSError as exc:
            return f"cannot run {name}: {exc}"
        try:
            _, err = await asyncio.wait_for(proc.communicate(), self.cli_kill_s)
        except asyncio.TimeoutError:
            proc.kill()
            await proc.wait()
            return f"`{name} kill` did not finish within {self.cli_kill_s:g} s"
        if proc.returncode != 0:
            return f"`{name} kill` failed: {err.decode(errors='replace').strip()[:300]}"
        return None

    async def ended(self, stopping: str | None, oom_kills: int | None) -> ExitInfo | None:
        """How the container ended, as the daemon says now (gone counts as removed from outside the runner);
        None while it runs or when the daemon cannot tell."""
        try:
            state = (await self.client.inspect(self.container_id)).get("State") or {}
        except DockerError as exc:
            if exc.status == 404:
                return ExitInfo(None, "removed from outside the runner", str(exc))
            return None
        if state.get("Running"):
            return None
        return classify_exit(state, stopping, oom_kills)
