"""The run directory: the contract between the runner, the console and a reviewer.

Layout (see docs/architecture.md):
    run.json, plan.toml, provenance.json, state.json, events.jsonl, runner.lock, runner.log,
    control/abort.json, done/<arm>/<mode>/<phase>/<rep>,
    arms/<arm>/<mode>/serve.log, arms/<arm>/<mode>/env/ENV, arms/<arm>/effective.json,
    arms/<arm>/<mode>/<phase>/<rep>/{requests.jsonl, phase.json}, summary.md, summary.json
"""

from __future__ import annotations

import fcntl
import os
import secrets
import shutil
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Literal

from runners.plan.steps import StepKey
from runners.run.files import read_json, write_json_atomic

SCHEMA_VERSION = 1
RunStatus = Literal["created", "running", "finished", "failed", "aborted"]


class RunDirError(Exception):
    """A run directory that cannot be used as asked; the message says what to do."""


@dataclass
class RunState:
    """`state.json`: the current snapshot, replaced atomically."""

    run_id: str
    plan: str
    status: RunStatus = "created"
    resumable: bool = True
    reason: str = ""
    current: dict | None = None
    steps_total: int = 0
    steps_done: int = 0
    steps_failed: int = 0
    runner_pid: int | None = None
    started_at: float | None = None
    updated_at: float = field(default_factory=time.time)
    ended_at: float | None = None
    schema: int = SCHEMA_VERSION

    def label(self) -> str:
        """Status as people read it, e.g. `aborted (resumable)`."""
        if self.status in ("aborted", "failed") and self.resumable:
            return f"{self.status} (resumable)"
        return self.status


def new_run_id(plan_name: str) -> str:
    """`<plan>-YYYYmmdd-HHMMSS-<4 hex>`."""
    return f"{plan_name}-{time.strftime('%Y%m%d-%H%M%S')}-{secrets.token_hex(2)}"


class RunDir:
    """Paths and the few operations every process performs on a run directory."""

    def __init__(self, root: Path) -> None:
        self.root = root.resolve()

    run_json = property(lambda self: self.root / "run.json")
    plan_toml = property(lambda self: self.root / "plan.toml")
    provenance = property(lambda self: self.root / "provenance.json")
    state_json = property(lambda self: self.root / "state.json")
    events = property(lambda self: self.root / "events.jsonl")
    summary_md = property(lambda self: self.root / "summary.md")
    summary_json = property(lambda self: self.root / "summary.json")
    runner_log = property(lambda self: self.root / "runner.log")
    control_dir = property(lambda self: self.root / "control")
    lock_path = property(lambda self: self.root / "runner.lock")
    watchdog_jsonl = property(lambda self: self.root / "watchdog.jsonl")
    watchdog_json = property(lambda self: self.root / "watchdog.json")
    runner_heartbeat = property(lambda self: self.root / "runner.heartbeat")
    guard_heartbeat = property(lambda self: self.root / "guard.heartbeat")
    guard_log = property(lambda self: self.root / "guard.log")

    def step_dir(self, step: StepKey) -> Path:
        """Where a step's evidence goes."""
        return self.root / "arms" / step.path

    def done_path(self, step: StepKey) -> Path:
        """The step's DONE marker."""
        return self.root / "done" / step.path

    def serve_dir(self, arm: str, mode: str) -> Path:
        """Where a serve session of `arm` in `mode` logs (serve.log) and keeps its ENV dir."""
        return self.root / "arms" / arm / mode

    def effective_env_path(self, arm: str) -> Path:
        """The arm's effective settings as the serve target reported them."""
        return self.root / "arms" / arm / "effective.json"

    def is_run(self) -> bool:
        """True when this directory holds a run (has run.json)."""
        return self.run_json.is_file()

    def info(self) -> dict:
        """`run.json`: run id, plan name, where the plan came from."""
        return read_json(self.run_json)

    def is_done(self, step: StepKey) -> bool:
        """True when the step's DONE marker exists."""
        return self.done_path(step).is_file()

    def mark_done(self, step: StepKey, record: dict) -> None:
        """Write the DONE marker atomically (temp file, fsync, rename, fsync of the directory)."""
        write_json_atomic(self.done_path(step), {"step": step.as_dict(), "at": time.time(), **record})

    def read_state(self) -> RunState | None:
        """The last state snapshot, or None before the first one."""
        try:
            data = read_json(self.state_json)
        except FileNotFoundError:
            return None
        known = RunState.__dataclass_fields__
        return RunState(**{k: v for k, v in data.items() if k in known})

    def write_state(self, state: RunState) -> None:
        """Replace state.json atomically."""
        state.updated_at = time.time()
        write_json_atomic(self.state_json, asdict(state))

    def fresh_step_dir(self, step: StepKey) -> Path:
        """An empty directory for the step; evidence of an unfinished earlier attempt is kept aside."""
        d = self.step_dir(step)
        if d.exists():
            attempt = 1
            while d.with_name(f"{d.name}.incomplete-{attempt}").exists():
                attempt += 1
            d.rename(d.with_name(f"{d.name}.incomplete-{attempt}"))
        d.mkdir(parents=True)
        return d


def create_run_dir(out: Path | None, runs_root: Path, plan_source: Path, plan_name: str, plan_dir: Path) -> RunDir:
    """Create a run directory (at `out`, or a new id under `runs_root`) holding a copy of the plan."""
    run_id = new_run_id(plan_name)
    root = out if out is not None else runs_root / run_id
    if root.exists():
        if RunDir(root).is_run():
            raise RunDirError(
                f"{root} already holds a run; continue it with `gb10-console run --resume {root}` "
                "or choose another --out"
            )
        if any(root.iterdir()):
            raise RunDirError(f"{root} exists and is not empty; choose another --out")
    root.mkdir(parents=True, exist_ok=True)
    run = RunDir(root)
    shutil.copyfile(plan_source, run.plan_toml)
    write_json_atomic(
        run.run_json,
        {
            "schema": SCHEMA_VERSION,
            "run_id": run_id,
            "plan": plan_name,
            "plan_source": str(plan_source.resolve()),
            "plan_dir": str(plan_dir),
            "created_at": time.time(),
        },
    )
    return run


class RunnerLock:
    """An exclusive flock on runner.lock: one runner per run directory; released when its holder dies."""

    def __init__(self, run: RunDir) -> None:
        self.run = run
        self._fd: int | None = None

    def acquire(self) -> None:
        """Take the lock or raise RunDirError saying which runner holds it."""
        fd = os.open(self.run.lock_path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            state = self.run.read_state()
            pid = state.runner_pid if state else "?"
            raise RunDirError(
                f"{self.run.root} is being run by another runner (pid {pid}); attach with "
                f"`gb10-console attach {self.run.root}` or abort it first"
            ) from None
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        self._fd = fd

    def release(self) -> None:
        """Drop the lock."""
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None


def runner_alive(run: RunDir) -> bool:
    """True while some runner holds the run's lock."""
    try:
        fd = os.open(run.lock_path, os.O_RDONLY)
    except FileNotFoundError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    finally:
        os.close(fd)
    return False
