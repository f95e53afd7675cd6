"""Control requests to a running runner, as files in `<run>/control/` (they work across processes and hosts).

The console (or `gb10-console abort`) writes `control/abort.json` atomically; the runner polls for
it, acts, and removes it. `control/pause.json` is a state, not a request: while it exists the runner
holds dispatch (requests in flight finish); removing it continues. A new runner session clears both.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Callable

from runners.run.files import read_json, write_json_atomic
from runners.run.rundir import RunDir

POLL_INTERVAL_S = 0.2


def request_abort(run: RunDir, reason: str, by: str) -> None:
    """Ask the runner of `run` to abort (stop dispatch, cancel in flight, stop the target, stay resumable)."""
    write_json_atomic(
        run.control_dir / "abort.json", {"reason": reason, "by": by, "pid": os.getpid(), "at": time.time()}
    )


def abort_pending(run: RunDir) -> bool:
    """True while an abort request waits in control/ (the watcher takes it within POLL_INTERVAL_S)."""
    return (run.control_dir / "abort.json").exists()


def take_abort_request(run: RunDir) -> dict | None:
    """The pending abort request, removed from disk; None when there is none."""
    path = run.control_dir / "abort.json"
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
    """The pause request while one stands (an unreadable one still pauses), else None."""
    try:
        return read_json(run.control_dir / "pause.json")
    except FileNotFoundError:
        return None
    except ValueError:
        return {"by": "unknown"}


async def watch_control(
    run: RunDir, on_abort: Callable[[dict], None], on_pause: Callable[[dict | None], None] | None = None
) -> None:
    """Poll for control requests until cancelled: `on_abort(request)` per abort request, and
    `on_pause(request or None)` on every poll with the standing pause request (None: dispatch)."""
    while True:
        request = take_abort_request(run)
        if request is not None:
            on_abort(request)
        if on_pause is not None:
            on_pause(pause_requested(run))
        await asyncio.sleep(POLL_INTERVAL_S)
