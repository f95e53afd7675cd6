"""Control requests to a running runner, as files in `<run>/control/` (they work across processes and hosts).

The console (or `gb10-console abort`) writes `control/abort.json` atomically; the runner polls for
it, acts, and removes it. `control/pause.json` is a state, not a request: while it exists the runner
holds dispatch (requests in flight finish); removing it continues. A new runner session clears both.

Only the run's owner (the uid that owns the run directory) drives the run: a control file owned by another uid
is never acted on; the runner removes it and says so (`refuse_foreign`, a line in runner.log).
"""

from __future__ import annotations

import asyncio
import os
import sys
import time
from collections.abc import Callable

from runners.run.files import read_json, write_json_atomic
from runners.run.rundir import RunDir

POLL_INTERVAL_S = 0.2
CONTROL_FILES = ("abort.json", "pause.json")


def foreign_writer(run: RunDir, name: str) -> int | None:
    """The uid that owns control/`name` when it is not the run directory's owner; None when it is (or no file)."""
    try:
        owner = os.stat(run.root).st_uid
        writer = os.lstat(run.control_dir / name).st_uid
    except OSError:
        return None
    return writer if writer != owner else None


def refuse_foreign(run: RunDir) -> list[str]:
    """Remove the control files the run's owner did not write; a line for each saying whose it was."""
    lines = []
    for name in CONTROL_FILES:
        writer = foreign_writer(run, name)
        if writer is not None:
            (run.control_dir / name).unlink(missing_ok=True)
            lines.append(f"ignored control/{name}: written by uid {writer}, not by the run's owner "
                         f"(uid {os.stat(run.root).st_uid})")  # fmt: skip
    return lines


def request_abort(run: RunDir, reason: str, by: str) -> None:
    """Ask the runner of `run` to abort (stop dispatch, cancel in flight, stop the target, stay resumable)."""
    write_json_atomic(
        run.control_dir / "abort.json", {"reason": reason, "by": by, "pid": os.getpid(), "at": time.time()}
    )


def abort_pending(run: RunDir) -> bool:
    """True while an abort request of the run's owner waits in control/ (the watcher takes it within
    POLL_INTERVAL_S)."""
    return (run.control_dir / "abort.json").exists() and foreign_writer(run, "abort.json") is None


def take_abort_request(run: RunDir) -> dict | None:
    """The pending abort request, removed from disk; None when there is none."""
    path = run.control_dir / "abort.json"
    if foreign_writer(run, path.name) is not None:  # never acted on (`refuse_foreign` removes it)
        return None
    try:
        request = read_json(path)
    except FileNotFoundError:
        return None
    except ValueError:
        request = {"reason": "unreadable abort request", "by": "unknown"}
    path.unlink(missing_ok=True)
    return request


def request_pause(run: RunDir, by: str) -> None:
    """Ask the runner of `run` to hold dispatch until `request_continue` (requests in flight finish)."""
    write_json_atomic(run.control_dir / "pause.json", {"by": by, "pid": os.getpid(), "at": time.time()})


def request_continue(run: RunDir) -> None:
    """Let a paused runner dispatch again."""
    (run.control_dir / "pause.json").unlink(missing_ok=True)


def pause_requested(run: RunDir) -> dict | None:
    """The pause request while one stands (an unreadable one still pauses; another uid's never), else None."""
    if foreign_writer(run, "pause.json") is not None:
        return None
    try:
        return read_json(run.control_dir / "pause.json")
    except FileNotFoundError:
        return None
    except ValueError:
        return {"by": "unknown"}


def log_refused(line: str) -> None:
    """A refused control file, as a line on stderr (runner.log for a detached runner)."""
    print(f"runner: {line}", file=sys.stderr, flush=True)


async def watch_control(
    run: RunDir,
    on_abort: Callable[[dict], None],
    on_pause: Callable[[dict | None], None] | None = None,
    on_refused: Callable[[str], None] = log_refused,
) -> None:
    """Poll for control requests until cancelled: `on_refused(line)` per file of another uid (removed),
    `on_abort(request)` per abort request, and `on_pause(request or None)` on every poll with the standing
    pause request (None: dispatch)."""
    while True:
        for line in refuse_foreign(run):
            on_refused(line)
        request = take_abort_request(run)
        if request is not None:
            on_abort(request)
        if on_pause is not None:
            on_pause(pause_requested(run))
        await asyncio.sleep(POLL_INTERVAL_S)
