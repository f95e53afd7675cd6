"""Fakes of what a soak session drives: a serve runtime that starts nothing (its base URL is a mock server) and a
memory guard that cannot start."""

from __future__ import annotations

import asyncio

from runners.run.rundir import RunDir
from runners.run.targets import TargetRef, read_targets
from runners.serve.runtime import ExitInfo, ProbeResult, ReadyInfo, ServeError
from runners.watchdog.link import GuardError


class FakeRuntime:
    """A serve runtime that starts nothing: its base URL is a mock server; death and failures are scripted."""

    kind = "fake"
    env_dir = profile_dir = profile_dir_in_target = arm_env = None  # like an external target: nothing of ours

    def __init__(self, base_url: str, arm: str, script: dict[str, object], run: RunDir) -> None:
        self.base_url, self.arm, self.script, self.run = base_url, arm, script, run
        self.calls: list[str] = []
        self.targets_seen: list[list[TargetRef]] = []
        self._died = asyncio.Event()

    async def start(self) -> None:
        self.calls.append("start")
        die_after = self.script.get("die_after_s")
        if die_after is not None:
            asyncio.get_running_loop().call_later(float(die_after), self._died.set)

    async def wait_ready(self, deadline_s: float) -> ReadyInfo:
        self.calls.append("wait_ready")
        self.targets_seen.append(read_targets(self.run))  # what the guard would see while this target starts
        if self.script.get("not_ready"):
            raise ServeError("the fake target never became ready")
        return ReadyInfo("mock", 0.01, 0.01)

    async def probe(self) -> ProbeResult:
        return ProbeResult(True, 0.001, "ok")

    async def wait_exit(self) -> ExitInfo:
        await self._died.wait()
        return ExitInfo(-9, "killed by SIGKILL from outside the runner")

    async def stop(self, grace_s: float) -> ExitInfo:
        self.calls.append("stop")
        if self.script.get("stop_fails"):
            raise ServeError("the fake target ignores every signal")
        return ExitInfo(-15, "terminated")

    async def kill(self) -> ExitInfo:
        self.calls.append("kill")
        return ExitInfo(-9, "killed")

    def logs(self, lines: int = 20) -> list[str]:
        return []

    async def inspect(self) -> dict:
        return {"kind": self.kind, "base_url": self.base_url}

    def provenance(self) -> dict:
        return {"kind": self.kind, "url": self.base_url}

    def target_ref(self, arm: str, mode: str) -> TargetRef | None:
        return TargetRef("process", arm, mode, pid=4242, start_ticks=1)


class NoGuard:
    """A memory guard that cannot start (monkeypatch it over `runners.soak.execute.GuardLink`): the session
    ends right after its start-of-session events, before any target starts."""

    def __init__(self, *args: object) -> None:
        pass

    def start(self) -> None:
        raise GuardError("no guard in this test")

    async def stop(self) -> None:
        pass
