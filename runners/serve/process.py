"""ProcessRuntime: the serve target as a local subprocess that never outlives its runner.

The child leads a process group of its own (so the whole group can be signalled) in the runner's
session, and has PR_SET_PDEATHSIG=SIGKILL (so it dies when the runner dies, even by SIGKILL). `stop`
sends SIGTERM to the group, waits `grace_s`, then SIGKILLs the group and reaps the child.

Not a session of its own: with `kernel.sched_autogroup_enabled=1` (the default on most distributions)
a new session is a new CPU-scheduling autogroup, and CFS shares the CPU between autogroups, not between
threads. vLLM started that way on 2 cores streamed its chunks in bursts: client TTFT mean 382 ms against
its own histogram's 29 ms at concurrency 4; the same with autogroups off, or as a process group alone,
agreed within 9 ms (docs/benchmarks.md, issue 19).
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import os
import signal
import socket
import sys
import time
from pathlib import Path

from engine.env_sentinel import ENV_DIR_VAR, SENTINEL_NAME, format_sentinel
from runners.host.meminfo import read_oom_kill_count
from runners.host.owner import RUN_ID_VAR, process_start_ticks
from runners.plan.steps import PROFILE_DIR_NAME
from runners.run.files import tail_lines, write_atomic
from runners.run.redact import redact_argv
from runners.run.targets import TargetRef
from runners.serve.env_reports import clear_reports
from runners.serve.readiness import probe, wait_ready_explained
from runners.serve.runtime import OOM_KILLED, ExitInfo, ProbeResult, ReadyInfo, ServeError

PR_SET_PDEATHSIG = 1
KILL_REAP_TIMEOUT_S = 5.0


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port that was free on `host` a moment ago."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def child_setup_hook():
    """A preexec_fn: the child leads a process group of its own and, on Linux, gets PR_SET_PDEATHSIG=SIGKILL
    (libc resolved before fork)."""
    prctl = ctypes.CDLL(None, use_errno=True).prctl if sys.platform.startswith("linux") else None
    parent = os.getpid()

    def hook() -> None:
        os.setpgid(0, 0)  # a group of its own, in the runner's session (and CPU autogroup)
        if prctl is not None:
            prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
            if os.getppid() != parent:  # the runner died between fork and prctl
                os._exit(1)

    return hook


class ProcessRuntime:
    """A local serve process with its log in the run directory and its env also in an ENV sentinel in `env_dir`
    (private: the run's runtime directory)."""

    kind = "process"

    def __init__(
        self,
        command: list[str],
        env: dict[str, str],
        log_path: Path,
        env_dir: Path,
        host: str = "127.0.0.1",
        run_id: str | None = None,
        profile_dir: Path | None = None,
    ) -> None:
        self.host = host
        self.port = free_port(host)
        url_host = f"[{host}]" if ":" in host else host
        self.base_url = f"http://{url_host}:{self.port}"
        self.env_dir = env_dir
        self.profile_dir = (profile_dir or log_path.parent / PROFILE_DIR_NAME).resolve()
        self.profile_dir_in_target = str(self.profile_dir)
        self.log_path = log_path
        self.run_id = run_id
        fill = {"{host}": host, "{port}": str(self.port), "{env_dir}": str(env_dir),
                "{profile_dir}": self.profile_dir_in_target}  # fmt: skip
        self.command = [fill_placeholders(part, fill) for part in command]
        self.arm_env = {key: fill_placeholders(value, fill) for key, value in env.items()}
        self._proc: asyncio.subprocess.Process | None = None
        self._stopped_how: str | None = None
        self._oom_kills_at_start: int | None = None  # the host's /proc/vmstat oom_kill when it started

    @property
    def pid(self) -> int | None:
        """The serve process id once started."""
        return self._proc.pid if self._proc else None

    async def start(self) -> None:
        """Write the ENV sentinel, then launch the command in a process group of its own, output to serve.log."""
        write_atomic(self.env_dir / SENTINEL_NAME, format_sentinel(self.arm_env))
        clear_reports(self.env_dir)  # the plugin's reports of an earlier start must not verify this one
        self.profile_dir.mkdir(parents=True, exist_ok=True)
        env = {**os.environ, **self.arm_env, ENV_DIR_VAR: str(self.env_dir)}
        if self.run_id:
            env[RUN_ID_VAR] = self.run_id  # the label the guard checks before it touches the process
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        self._oom_kills_at_start = read_oom_kill_count()
        with open(self.log_path, "ab") as log:  # noqa: ASYNC230 - a local append, once per start
            stamp = time.strftime("%Y-%m-%d %H:%M:%S")
            log.write(f"\n=== gb10-console {stamp}: starting {' '.join(self.command)}\n".encode())
            log.flush()
            try:
                self._proc = await asyncio.create_subprocess_exec(
                    *self.command,
                    stdin=asyncio.subprocess.DEVNULL,
                    stdout=log,
                    stderr=asyncio.subprocess.STDOUT,
                    env=env,
                    preexec_fn=child_setup_hook(),
                )
            except OSError as exc:
                raise ServeError(f"cannot start serve command {self.command[0]!r}: {exc.strerror or exc}") from None

    def _exited(self) -> str | None:
        if self._proc is None:
            return "was never started"
        rc = self._proc.returncode
        if rc is None:
            return None
        return f"exited with code {rc}" if rc >= 0 else f"was killed by signal {-rc}"

    async def wait_ready(self, deadline_s: float) -> ReadyInfo:
        """Ready = /health 200 and a 1-token completion; fails fast if the process exits."""
        hint = f"see {self.log_path}"
        return await wait_ready_explained(self.base_url, deadline_s, self._exited, hint, lambda: self.logs(8))

    async def probe(self) -> ProbeResult:
        """One bounded GET /health."""
        return await probe(self.base_url)

    async def wait_exit(self) -> ExitInfo:
        """Return when the process ends by itself (or is ended by stop/kill)."""
        if self._proc is None:
            return ExitInfo(None, "not started")
        rc = await self._proc.wait()
        if rc == -signal.SIGKILL and self._stopped_how is None:
            kills = read_oom_kill_count()
            new = kills - self._oom_kills_at_start if kills is not None and self._oom_kills_at_start is not None else 0
            if new > 0:  # a SIGKILL nobody here sent, while the kernel's OOM killer was at work
                detail = f"the host's OOM killer ended {new} process(es) while it ran (/proc/vmstat oom_kill)"
                return ExitInfo(rc, OOM_KILLED, detail)
        return ExitInfo(rc, self._stopped_how or "exited")

    async def stop(self, grace_s: float) -> ExitInfo:
        """SIGTERM the process group, wait up to `grace_s`, then SIGKILL it; always reaps the child."""
        if self._proc is None:
            return ExitInfo(None, "not started")
        if self._proc.returncode is None:
            self._stopped_how = "terminated"
            self._signal_group(signal.SIGTERM)
            try:
                await asyncio.wait_for(asyncio.shield(self._proc.wait()), grace_s)
            except asyncio.TimeoutError:
                return await self.kill()
        self._signal_group(signal.SIGKILL)  # children the target left behind in its group
        return ExitInfo(self._proc.returncode, self._stopped_how or "exited")

    async def kill(self) -> ExitInfo:
        """SIGKILL the process group and reap the child."""
        if self._proc is None:
            return ExitInfo(None, "not started")
        if self._proc.returncode is None:
            self._stopped_how = "killed"
        self._signal_group(signal.SIGKILL)
        try:
            await asyncio.wait_for(asyncio.shield(self._proc.wait()), KILL_REAP_TIMEOUT_S)
        except asyncio.TimeoutError:
            raise ServeError(
                f"serve process {self._proc.pid} survived SIGKILL for {KILL_REAP_TIMEOUT_S:.0f} s "
                "(uninterruptible sleep?); check it with `ps -o pid,stat,wchan -p PID`"
            ) from None
        return ExitInfo(self._proc.returncode, self._stopped_how or "exited")

    def _signal_group(self, sig: signal.Signals) -> None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self._proc.pid, sig)

    def logs(self, lines: int = 20) -> list[str]:
        """The last lines of serve.log."""
        return tail_lines(self.log_path, lines)

    async def inspect(self) -> dict:
        """pid, command, url, running or exit code."""
        proc = self._proc
        return {
            "kind": self.kind,
            "pid": proc.pid if proc else None,
            "command": redact_argv(self.command),
            "base_url": self.base_url,
            "running": bool(proc and proc.returncode is None),
            "returncode": proc.returncode if proc else None,
            "log": str(self.log_path),
        }

    def provenance(self) -> dict:
        """The command line that ran."""
        return {"kind": self.kind, "command": redact_argv(self.command)}

    def target_ref(self, arm: str, mode: str) -> TargetRef | None:
        """The process group leader and its start time (so a reused pid is never taken for it); None before start."""
        pid = self.pid
        if pid is None:
            return None
        return TargetRef("process", arm, mode, pid=pid, start_ticks=process_start_ticks(pid))


def fill_placeholders(part: str, values: dict[str, str]) -> str:
    """`part` with every `{name}` key of `values` replaced by its value."""
    for key, value in values.items():
        part = part.replace(key, value)
    return part
