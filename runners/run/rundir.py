"""The run directory: the contract between the runner, the console and a reviewer.

Layout (see docs/architecture.md):
    run.json, plan.toml, provenance.json, state.json, events.jsonl, runner.lock, runner.log,
    control/abort.json, done/<arm>/<mode>/<phase>/<rep>,
    arms/<arm>/<mode>/serve.log, arms/<arm>/<mode>/env/ENV, arms/<arm>/effective.json,
    arms/<arm>/<mode>/<phase>/<rep>/{requests.jsonl, phase.json}, summary.md, summary.json
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import secrets
import socket
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Literal

import psutil

from engine.config_file import ConfigFileError, read_toml
from runners.plan.steps import StepKey
from runners.run.files import read_json, write_atomic, write_json_atomic
from runners.run.plan_copy import PlanCopyError, redacted_plan_text

SCHEMA_VERSION = 1
RunStatus = Literal["created", "running", "finished", "failed", "aborted", "damaged"]
STATUSES = ("created", "running", "finished", "failed", "aborted", "damaged")
LOCK_SETTLE_S = 2.0  # a runner writes who it is right after it takes runner.lock: this long is plenty
LOCK_POLL_S = 0.05
LOCK_ATTEMPTS = 3


class RunDirError(Exception):
    """A run directory that cannot be used as asked; the message says what to do."""


class DamagedRunFile(RunDirError, ValueError):
    """A file of the run directory cannot be read as what it must be; the message names it and what to do."""


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


_STATE_TYPES: dict[str, tuple[type, ...]] = {
    "run_id": (str,), "plan": (str,), "status": (str,), "resumable": (bool,), "reason": (str,),
    "current": (dict, type(None)), "steps_total": (int,), "steps_done": (int,), "steps_failed": (int,),
    "runner_pid": (int, type(None)), "started_at": (int, float, type(None)), "updated_at": (int, float),
    "ended_at": (int, float, type(None)), "schema": (int,),
}  # fmt: skip


def state_problem(data: object) -> str | None:
    """What makes `data` (state.json parsed) not a RunState, or None when it is one."""
    if not isinstance(data, dict):
        return f"not a JSON object but {type(data).__name__}"
    for name in ("run_id", "plan"):
        if name not in data:
            return f"{name!r} is missing"
    for name, types in _STATE_TYPES.items():
        if name not in data:
            continue
        value = data[name]
        if not isinstance(value, types) or isinstance(value, bool) != (bool in types):  # True is an int too
            return f"{name!r} is {json.dumps(value)[:40]}, not {' or '.join(t.__name__ for t in types)}"
    if data.get("status", "created") not in STATUSES:
        return f"status {data['status']!r} is none of {', '.join(STATUSES)}"
    return None


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
        """`run.json`: run id, plan name, where the plan came from.

        Raises FileNotFoundError, or DamagedRunFile (a RunDirError and ValueError) saying what to do.
        """
        try:
            data = read_json(self.run_json)
        except ValueError as exc:
            raise DamagedRunFile(damaged_run_json(self, str(exc).removeprefix(f"{self.run_json}: "))) from None
        except OSError as exc:
            if isinstance(exc, FileNotFoundError):
                raise
            raise DamagedRunFile(damaged_run_json(self, exc.strerror or str(exc))) from None
        if not isinstance(data, dict):
            raise DamagedRunFile(damaged_run_json(self, f"not a JSON object but {type(data).__name__}"))
        if not isinstance(data.get("run_id"), str) or not data["run_id"]:
            raise DamagedRunFile(damaged_run_json(self, "'run_id' is missing or not a string"))
        return data

    def plan_dir(self) -> Path:
        """The directory the plan's relative paths resolve against (run.json `plan_dir`); DamagedRunFile if absent."""
        plan_dir = self.info().get("plan_dir")
        if not isinstance(plan_dir, str) or not plan_dir:
            raise DamagedRunFile(damaged_run_json(self, "'plan_dir' is missing or not a string"))
        return Path(plan_dir)

    def is_done(self, step: StepKey) -> bool:
        """True when the step's DONE marker exists."""
        return self.done_path(step).is_file()

    def mark_done(self, step: StepKey, record: dict) -> None:
        """Write the DONE marker atomically (temp file, fsync, rename, fsync of the directory)."""
        write_json_atomic(self.done_path(step), {"step": step.as_dict(), "at": time.time(), **record})

    def read_state(self) -> RunState | None:
        """The last state snapshot; None before the first one; when state.json cannot be read as one, a
        `damaged` state whose reason names the file and what to do (never a traceback, never "created")."""
        try:
            data = read_json(self.state_json)
        except FileNotFoundError:
            return None
        except (OSError, ValueError) as exc:
            return self._damaged_state(str(exc).removeprefix(f"{self.state_json}: "))
        problem = state_problem(data)
        if problem is not None:
            return self._damaged_state(problem)
        known = RunState.__dataclass_fields__
        return RunState(**{k: v for k, v in data.items() if k in known})

    def _damaged_state(self, why: str) -> RunState:
        try:
            info = self.info()
        except (OSError, ValueError):
            info = {}
        reason = (
            f"{self.state_json} is damaged ({why}); it is derived: `gb10-console run --resume {self.root}` "
            "rebuilds it from events.jsonl and the DONE markers (the damaged copy is kept)"
        )
        return RunState(run_id=str(info.get("run_id", self.root.name)), plan=str(info.get("plan", "?")),
                        status="damaged", reason=reason)  # fmt: skip

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
    try:
        plan_text = redacted_plan_text(plan_source)  # hidden env values left out: runners/run/plan_copy.py
    except PlanCopyError as exc:
        raise RunDirError(str(exc)) from None
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
    write_atomic(run.plan_toml, plan_text)
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


@dataclass(frozen=True)
class LockHolder:
    """Who wrote runner.lock: a runner's pid, the pid's start time (psutil's create_time) and host."""

    pid: int
    started: float | None
    host: str = ""

    def alive(self) -> bool:
        """True while that very process runs (a pid reused by another process, or a zombie, is not it)."""
        if self.host and self.host != socket.gethostname():
            return True  # a runner on another host (a shared file system): cannot tell, so assume it runs
        try:
            proc = psutil.Process(self.pid)
            if proc.status() == psutil.STATUS_ZOMBIE:
                return False
            return self.started is None or abs(proc.create_time() - self.started) < 0.05
        except psutil.NoSuchProcess:
            return False
        except psutil.AccessDenied:
            return True  # it exists and is not ours to inspect: never take its lock

    def describe(self) -> str:
        """`pid N`, with the host when it is another one."""
        return f"pid {self.pid}" + (f" on {self.host}" if self.host and self.host != socket.gethostname() else "")

    @classmethod
    def of_this_process(cls) -> LockHolder:
        """This process, as a runner writes itself into runner.lock."""
        return cls(os.getpid(), psutil.Process().create_time(), socket.gethostname())

    @classmethod
    def parse(cls, text: str) -> LockHolder | None:
        """The holder written in runner.lock (JSON; a bare pid from older runners), None when unreadable."""
        text = text.strip()
        if text.isdigit():
            return cls(int(text), None)
        try:
            data = json.loads(text)
        except ValueError:
            return None
        if not isinstance(data, dict) or not isinstance(data.get("pid"), int):
            return None
        started = data.get("started")
        started = float(started) if isinstance(started, (int, float)) else None
        return cls(data["pid"], started, str(data.get("host", "")))


def lock_holder(run: RunDir) -> LockHolder | None:
    """The runner named in runner.lock (it may be long gone), None when there is none or it cannot be read."""
    try:
        return LockHolder.parse(run.lock_path.read_text(errors="replace"))
    except OSError:
        return None


class RunnerLock:
    """An exclusive flock on runner.lock, which names its holder (pid and start time): one runner per run directory.

    The flock goes when its holder dies. A lock still held while the process it names is gone (a descendant
    that inherited the descriptor outlived the runner) is stale: it is taken over (`took_over` says from whom),
    never obeyed; only a live runner makes `acquire` refuse, and the refusal names that runner.
    """

    def __init__(self, run: RunDir) -> None:
        self.run = run
        self._fd: int | None = None
        self.took_over: str | None = None

    def acquire(self) -> None:
        """Take the lock or raise RunDirError naming the live runner that holds it."""
        for _ in range(LOCK_ATTEMPTS):
            fd = os.open(self.run.lock_path, os.O_RDWR | os.O_CREAT, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(fd)
                self._held_elsewhere()
                continue
            if not _same_file(fd, self.run.lock_path):  # taken over and replaced while we opened it: again
                os.close(fd)
                continue
            os.ftruncate(fd, 0)
            me = LockHolder.of_this_process()
            os.pwrite(fd, json.dumps({"pid": me.pid, "started": me.started, "host": me.host}).encode() + b"\n", 0)
            self._fd = fd
            return
        raise RunDirError(f"{self.run.lock_path} changed hands {LOCK_ATTEMPTS} times while this runner tried to "
                          "take it; another runner is starting on this run: attach to it or try again")  # fmt: skip

    def _held_elsewhere(self) -> None:
        """runner.lock is flocked by another process: refuse if it is a live runner, else take the lock over."""
        holder = lock_holder(self.run)
        end = time.monotonic() + LOCK_SETTLE_S
        while (holder is None or not holder.alive()) and time.monotonic() < end:
            time.sleep(LOCK_POLL_S)  # a runner that has just taken the lock writes who it is at once
            holder = lock_holder(self.run)
        if holder is not None and holder.alive():
            raise RunDirError(
                f"{self.run.root} is being run by another runner ({holder.describe()}); attach with "
                f"`gb10-console attach {self.run.root}` or abort it first"
            )
        named = f"{holder.describe()}, no longer running" if holder else "no runner named in it"
        with contextlib.suppress(FileNotFoundError):  # the holder keeps a lock on a file no one opens any more
            self.run.lock_path.unlink()
        self.took_over = f"runner.lock was still held by another process ({named}); it was taken over"

    def release(self) -> None:
        """Drop the lock."""
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None


def _same_file(fd: int, path: Path) -> bool:
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return False
    mine = os.fstat(fd)
    return (st.st_dev, st.st_ino) == (mine.st_dev, mine.st_ino)


def runner_alive(run: RunDir) -> bool:
    """True while a live runner holds the run's lock (a lock held by a process that is not one does not count)."""
    try:
        fd = os.open(run.lock_path, os.O_RDONLY)
    except FileNotFoundError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = lock_holder(run)
        return holder is None or holder.alive()  # None: a runner that has not written itself in yet
    finally:
        os.close(fd)
    return False


def damaged_run_json(run: RunDir, why: str) -> str:
    """What to say about an unreadable run.json: it cannot be rebuilt for sure, so say what it held and offer
    the content provenance.json and plan.toml suggest."""
    head = (
        f"{run.run_json} is damaged ({why}). It holds the run's id and the directory the plan's relative paths "
        "resolve against; it is not rebuilt automatically."
    )
    guess = _run_json_guess(run)
    if guess is None:
        return f"{head} Restore it from a backup; the run cannot be resumed or reported without it."
    return (
        f"{head} Restore it from a backup, or check and write this (from provenance.json) to it, then run the "
        f"command again: {json.dumps(guess)}"
    )


def _run_json_guess(run: RunDir) -> dict | None:
    """run.json as provenance.json (run id, plan source) and plan.toml (name) suggest it, or None."""
    try:
        prov = read_json(run.provenance)
        source = prov["plan"]["source"]
        run_id = prov["run_id"]
        name = read_toml(run.plan_toml)[1]["name"]
    except (OSError, ValueError, KeyError, TypeError, ConfigFileError):
        return None
    if not all(isinstance(v, str) for v in (source, run_id, name)):
        return None
    return {"schema": SCHEMA_VERSION, "run_id": run_id, "plan": name, "plan_source": source,
            "plan_dir": str(Path(source).parent), "created_at": run.plan_toml.stat().st_mtime}  # fmt: skip
