"""The run's private runtime directory: the files that must carry real values, outside the run directory.

The ENV sentinel (the arm's env, secrets included: it is how they reach the server) and gb10-vllm-plugin's
process reports live in `<root>/<run-id>/<arm>/<mode>/env/`, never in the run directory, which people share.
`<root>` is `$GB10_RUNTIME_DIR` when set, else `/tmp/gb10-console-<uid>`. Not `$XDG_RUNTIME_DIR`: logind removes
it when the user's last session ends, and a soak outlives the ssh session that started it (its next target start
would find its env gone). Every level is made with
`os.mkdir(path, 0o700)`; a name that exists already is checked with `lstat` (a link is never followed) and must
be a directory owned by this user with no group or other bits, else `RuntimeDirError` (someone may have planted
it). In sticky /tmp no one else can rename or remove a directory of this user's once it is checked.

The runner removes a session's directory when its target stops and the run's when the runner session ends;
`runner.json` in the run's directory names the runner (pid, start time, host), so the next runner session of
this user (`sweep_stale`) removes those whose runner is gone (killed), and only those.
"""

from __future__ import annotations

import json
import os
import shutil
import stat
import time
from dataclasses import dataclass
from pathlib import Path

from runners.run.files import write_atomic
from runners.run.rundir import LockHolder

ENV_DIR = "env"  # a session's env directory: ENV and reports/
RUNTIME_DIR_VAR = "GB10_RUNTIME_DIR"  # where the private runtime directories go (the tests give each session its own)
RUNNER_FILE = "runner.json"
MAX_SWEPT = 64  # run directories looked at per sweep: a bounded walk, whatever piled up
YOUNG_S = 60.0  # a directory without runner.json this young may be a runner's between mkdir and its write


class RuntimeDirError(Exception):
    """The private runtime directory cannot be made or is not safe (another owner, a link, open modes)."""


def runtime_root() -> Path:
    """`$GB10_RUNTIME_DIR` (absolute) when set, else `/tmp/gb10-console-<uid>`; checked private when it is made."""
    explicit = os.environ.get(RUNTIME_DIR_VAR, "")
    if explicit and os.path.isabs(explicit):
        return Path(explicit)
    return Path("/tmp") / f"gb10-console-{os.getuid()}"


def _private(path: Path) -> str | None:
    """Why `path` is not a private directory of this user's (None: it is one)."""
    try:
        st = os.lstat(path)
    except OSError as exc:
        return f"cannot be read: {exc.strerror or exc}"
    if not stat.S_ISDIR(st.st_mode):
        return "is not a directory (a link or a file)"
    if st.st_uid != os.getuid():
        return f"is owned by uid {st.st_uid}, not by you (uid {os.getuid()})"
    if st.st_mode & 0o077:
        return f"has mode {stat.S_IMODE(st.st_mode):04o}, not 0700 (others can enter it)"
    return None


def ensure_private_dir(path: Path) -> Path:
    """Make `path` (its parent must be safe) as a 0700 directory, or check the one there; raises RuntimeDirError."""
    try:
        os.mkdir(path, 0o700)
    except FileExistsError:
        pass
    except OSError as exc:
        raise RuntimeDirError(f"cannot create the private runtime directory {path}: {exc.strerror or exc}") from None
    why = _private(path)
    if why is not None:
        raise RuntimeDirError(f"{path} {why}: refusing to keep the run's env there; remove it (or fix it) and retry")
    return path


def _safe_name(name: str) -> str:
    if not name or name in (".", "..") or "/" in name or "\0" in name:
        raise RuntimeDirError(f"{name!r} cannot name a directory of the private runtime directory")
    return name


@dataclass(frozen=True)
class RunRuntimeDir:
    """One run's private runtime directory (0700), holding each serve session's env directory."""

    path: Path

    def session_env_dir(self, arm: str, mode: str) -> Path:
        """`<run>/<arm>/<mode>/env/`, made 0700 at every level: where the session's ENV and reports go."""
        folder = ensure_private_dir(self.path)  # again: a cleaner of /tmp may have taken it during a long soak
        for part in (_safe_name(arm), _safe_name(mode), ENV_DIR):
            folder = ensure_private_dir(folder / part)
        return folder

    def remove_session(self, arm: str, mode: str) -> None:
        """Remove a session's directory (its target stopped): the real values go with it."""
        shutil.rmtree(self.path / _safe_name(arm) / _safe_name(mode), ignore_errors=True)

    def remove(self) -> None:
        """Remove the run's directory (the runner session ends)."""
        shutil.rmtree(self.path, ignore_errors=True)


def open_run_runtime(run_id: str, root: Path | None = None) -> RunRuntimeDir:
    """The run's private runtime directory under `root` (default `runtime_root()`), made or checked, with this
    process named its runner; raises RuntimeDirError."""
    base = ensure_private_dir(root or runtime_root())
    path = ensure_private_dir(base / _safe_name(run_id))
    me = LockHolder.of_this_process()
    runner = {"pid": me.pid, "started": me.started, "host": me.host}
    try:  # atomic: another session's sweep reading a half-written file would take this live run for a dead one
        write_atomic(path / RUNNER_FILE, json.dumps(runner))
    except OSError as exc:
        raise RuntimeDirError(f"cannot write {path / RUNNER_FILE}: {exc.strerror or exc}") from None
    return RunRuntimeDir(path)


def sweep_stale(root: Path | None = None) -> list[str]:
    """Remove run directories under `root` (default `runtime_root()`) whose runner is gone: a killed runner's
    real values. Only this user's root is read (a root that is not private is left alone), at most MAX_SWEPT
    entries; returns the run ids removed."""
    base = root or runtime_root()
    if _private(base) is not None:
        return []
    removed = []
    with os.scandir(base) as entries:
        for i, entry in enumerate(entries):
            if i >= MAX_SWEPT:
                break
            if not entry.is_dir(follow_symlinks=False):
                continue
            try:
                holder = LockHolder.parse((Path(entry.path) / RUNNER_FILE).read_text())
            except OSError:
                holder = None
                if time.time() - entry.stat(follow_symlinks=False).st_mtime < YOUNG_S:
                    continue
            if holder is None or not holder.alive():
                shutil.rmtree(entry.path, ignore_errors=True)
                removed.append(entry.name)
    return removed
