"""The ServeRuntime protocol and the values its methods return."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from runners.run.targets import TargetRef


class ServeError(Exception):
    """A serve target that failed to start, answer or stop; the message says where to look. `lasting`: a start that
    no retry can change (no such image, no GPU runtime, a bad mount): the run stops at once instead of trying
    every step's start."""

    def __init__(self, message: str, lasting: bool = False) -> None:
        super().__init__(message)
        self.lasting = lasting


@dataclass(frozen=True)
class ReadyInfo:
    """How the target became ready."""

    model: str
    waited_s: float
    first_token_s: float


@dataclass(frozen=True)
class ProbeResult:
    """One health probe."""

    healthy: bool
    latency_s: float | None
    detail: str


OOM_KILLED = "OOM-killed"  # ExitInfo.how of a target the kernel's OOM killer ended


@dataclass(frozen=True)
class ExitInfo:
    """How a target ended: its exit code (negative = killed by that signal) and how we ended it."""

    returncode: int | None
    how: str  # "exited" | "terminated" | "killed" | "OOM-killed" | "killed from outside the runner" | ...
    detail: str = ""

    def describe(self) -> str:
        """e.g. `killed (signal 9)` or `OOM-killed (exit code 137); OOMKilled=true; cgroup oom_kill 1`."""
        if self.returncode is None:
            text = self.how
        elif self.returncode < 0:
            text = f"{self.how} (signal {-self.returncode})"
        else:
            text = f"{self.how} (exit code {self.returncode})"
        return f"{text}; {self.detail}" if self.detail else text


class ServeRuntime(Protocol):
    """A serve target the runner drives. Every method has its own deadline."""

    kind: str
    base_url: str
    env_dir: Path | None  # host path of the arm's ENV sentinel dir (vLLM plugin reports land in it); None: not ours
    profile_dir: Path | None  # host path of the runner-owned trace dir (`{profile_dir}`); None: not ours
    profile_dir_in_target: str | None  # the same directory as the target sees it (a container path for Docker)
    arm_env: dict[str, str] | None  # the env the target is given, placeholders filled; None: not ours to give

    async def start(self) -> None:
        """Launch the target (returns once launched, not once ready)."""

    async def wait_ready(self, deadline_s: float) -> ReadyInfo:
        """Wait until /health answers and a 1-token completion succeeds; raise ServeError otherwise."""

    async def probe(self) -> ProbeResult:
        """One bounded health check."""

    async def wait_exit(self) -> ExitInfo:
        """Return when the target ends on its own (for watching it during a step)."""

    async def stop(self, grace_s: float) -> ExitInfo:
        """Stop gracefully, escalating to kill after `grace_s`."""

    async def kill(self) -> ExitInfo:
        """Kill at once."""

    def logs(self, lines: int = 20) -> list[str]:
        """The last lines of the target's log."""

    async def inspect(self) -> dict:
        """What the target is and its state now: pid or container id, command, state, exit code."""

    def provenance(self) -> dict:
        """What ran, for provenance.json: command, or image id and digests, or URL."""

    def target_ref(self, arm: str, mode: str) -> TargetRef | None:
        """How the guard finds and ends this target (targets.json); None when there is nothing of ours to end."""
