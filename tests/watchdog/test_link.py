"""The runner's link to its guard at start: no serve start is held back for a status the guard has not had time
to write, and a previous session's watchdog.json is never taken for this guard's word."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
import time
from pathlib import Path

from runners.plan.load import load_plan
from runners.run.files import write_json_atomic
from runners.run.rundir import RunDir, create_run_dir
from runners.watchdog.link import GuardLink
from tests.support.plans import write_plan

STATUS_DELAY_S = 1.0  # a writer thread behind a slow fsync: the heartbeat is there, the status is not yet

# A guard as the runner sees it: it beats its heartbeat at once and writes its first status (with its pid, as
# runners.watchdog.guard does) only STATUS_DELAY_S later; then keeps beating until killed.
SLOW_GUARD = textwrap.dedent(
    """
    import json, os, pathlib, sys, time
    root = pathlib.Path(sys.argv[1])
    (root / "guard.heartbeat").touch()
    time.sleep(float(sys.argv[2]))
    status = {"t": time.time(), "pid": os.getpid(), "level": "ok", "action": None, "restart_allowed": True,
              "reason": "above every floor"}
    tmp = root / "watchdog.json.tmp"
    tmp.write_text(json.dumps(status))
    os.replace(tmp, root / "watchdog.json")
    for _ in range(300):
        (root / "guard.heartbeat").touch()
        time.sleep(0.1)
    """
)


class SlowGuardLink(GuardLink):
    """The real link, with SLOW_GUARD in place of `python -m runners.watchdog.guard`."""

    def start(self) -> None:
        """Spawn the slow guard."""
        self._started_at = time.time()
        self.proc = subprocess.Popen([sys.executable, "-c", SLOW_GUARD, str(self.run.root), str(STATUS_DELAY_S)])


def _run_dir(tmp_path: Path) -> RunDir:
    loaded = load_plan(write_plan(tmp_path))
    return create_run_dir(tmp_path / "run", tmp_path, loaded.source, loaded.plan.name, loaded.base_dir)


async def test_the_first_serve_start_waits_for_the_guards_first_status_not_for_memory(tmp_path: Path) -> None:
    """Memory is fine; the guard is up but its first status lands a second after its heartbeat, over a previous
    session's watchdog.json at ABORT. The link returns only with this guard's status: a start is not refused."""
    run = _run_dir(tmp_path)
    previous = {"t": time.time() - 600, "pid": 1, "level": "abort", "restart_allowed": False, "reason": "old"}
    write_json_atomic(run.watchdog_json, previous)
    link = SlowGuardLink(run, load_plan(run.plan_toml).plan.watchdog)
    link.start()
    try:
        assert link.status() is None  # the previous session's guard (pid 1) does not speak for this one
        t0 = time.monotonic()
        await link.wait_up(deadline_s=10)
        assert time.monotonic() - t0 >= STATUS_DELAY_S * 0.9
        assert link.restart_blocked() is None, link.restart_blocked()
        assert link.status()["pid"] == link.proc.pid
        assert json.loads(run.watchdog_json.read_text())["level"] == "ok"
    finally:
        link.proc.kill()
        link.proc.wait(5)
