"""ExternalRuntime: a server at a URL that gb10-console does not own. It is probed, never stopped.

Its env cannot be set from here: the arm's env is what the server is expected to run, checked
where the server reports its effective settings and otherwise recorded as unverified.
"""

from __future__ import annotations

import asyncio
import time

from runners.run.targets import TargetRef
from runners.serve.readiness import probe, wait_ready
from runners.serve.runtime import ExitInfo, ProbeResult, ReadyInfo

HEALTH_POLL_S = 2.0
UNREACHABLE_AFTER_S = 30.0
NOT_OWNED = "left running (external: not owned by gb10-console)"


class ExternalRuntime:
    """A URL we do not own."""

    kind = "external"
    env_dir = None  # no ENV sentinel, no plugin reports, no trace directory: the server is not ours
    profile_dir = None
    profile_dir_in_target = None
    arm_env = None

    def __init__(self, url: str, poll_s: float = HEALTH_POLL_S, unreachable_after_s: float = UNREACHABLE_AFTER_S):
        self.base_url = url.rstrip("/")
        self.poll_s = poll_s
        self.unreachable_after_s = unreachable_after_s
        self._last_probe: ProbeResult | None = None

    async def start(self) -> None:
        """Nothing to launch: the server is someone else's."""

    async def wait_ready(self, deadline_s: float) -> ReadyInfo:
        """Ready = /health 200 and a 1-token completion within `deadline_s`."""
        hint = f"is the server at {self.base_url} running? gb10-console does not start external targets"
        return await wait_ready(self.base_url, deadline_s, lambda: None, hint)

    async def probe(self) -> ProbeResult:
        """One bounded GET /health."""
        self._last_probe = await probe(self.base_url)
        return self._last_probe

    async def wait_exit(self) -> ExitInfo:
        """Return once /health has failed for `unreachable_after_s` without a break."""
        failing_since: float | None = None
        while True:
            result = await self.probe()
            now = time.monotonic()
            if result.healthy:
                failing_since = None
            else:
                failing_since = failing_since or now
                if now - failing_since >= self.unreachable_after_s:
                    return ExitInfo(
                        None, "unreachable", f"/health failed for {self.unreachable_after_s:g} s: {result.detail}"
                    )
            await asyncio.sleep(self.poll_s)

    async def stop(self, grace_s: float) -> ExitInfo:
        """Never stops the server."""
        return ExitInfo(None, NOT_OWNED)

    async def kill(self) -> ExitInfo:
        """Never kills the server."""
        return ExitInfo(None, NOT_OWNED)

    def logs(self, lines: int = 20) -> list[str]:
        """An external server's log is not ours to read."""
        return []

    async def inspect(self) -> dict:
        """The URL and the last probe."""
        probe = self._last_probe
        return {
            "kind": self.kind,
            "base_url": self.base_url,
            "healthy": probe.healthy if probe else None,
            "last_probe": probe.detail if probe else None,
        }

    def provenance(self) -> dict:
        """The URL (what runs behind it is not known to us)."""
        return {"kind": self.kind, "url": self.base_url}

    def target_ref(self, arm: str, mode: str) -> TargetRef | None:
        """None: a server we do not own is never ended by the guard."""
        return None
