"""`attach` to first frame: `gb10-console attach --readonly RUN_DIR` in a fresh process until its first frame.

How it is measured: a synthetic run holding `hours` of soak history, its runner lock held (the run looks live).
t0 is taken just before `python -m console.cli attach --readonly RUN_DIR` (what the `gb10-console` script runs)
is spawned on a pseudo-terminal of SCREEN_SIZE, in a session of its own, from the project root; the
interpreter's start-up, every import, the argument parsing, opening the run and Textual's start-up are all
inside the figure. This process reads the terminal continuously (select, so the console never blocks on a full
terminal) and notes when the bytes arrive:

- first frame: the first cursor-positioning sequence (CSI row;col H). Textual begins every frame with one; what
  it writes before the first frame (alternate screen, mouse and paste modes, its terminal queries) has none.
- run shown: the first time the run's id appears on the screen (the title, once the console has opened the run).

The console is then ended (SIGTERM to its process group, SIGKILL after STOP_DEADLINE_S) and reaped; every try
is a fresh process. Where the run's id is not written within ATTACH_DEADLINE_S the try's figure is None.
"""

from __future__ import annotations

import fcntl
import os
import re
import select
import signal
import struct
import subprocess
import sys
import termios
import time
from dataclasses import dataclass, field
from pathlib import Path

from bench.console_bench.harness import SCREEN_SIZE
from bench.console_bench.metrics import TARGET_ATTACH_S
from bench.console_bench.workdir import workdir as workdir_for
from runners.replay.metrics import percentile
from runners.run.paths import PROJECT_ROOT
from runners.run.rundir import RunDir, RunnerLock
from runners.testbed.soak_writer import live_state, synthetic_run, write_history
from runners.testbed.synthetic_soak import SyntheticSoak

ATTACH_DEADLINE_S = 30.0  # a try that shows no run within this is None
STOP_DEADLINE_S = 5.0
READ_BYTES = 1 << 16
CURSOR_POSITION = re.compile(rb"\x1b\[\d+;\d+H")
# Variables that would size or redirect the console rather than let it draw on its terminal.
DROPPED_ENV = ("COLUMNS", "LINES", "TEXTUAL_DRIVER")


@dataclass(frozen=True)
class AttachTry:
    """One fresh `attach`: seconds from spawning it to its first frame, and to the run shown (None: not seen)."""

    first_frame_s: float | None
    run_shown_s: float | None
    bytes_read: int


@dataclass
class AttachTime:
    """`attach` to first frame over `tries` fresh processes, attached to a run of `hours` of history."""

    hours: float
    events: int  # the history's events.jsonl lines
    tries: list[AttachTry] = field(default_factory=list)
    first_frame_p50_s: float | None = None
    first_frame_max_s: float | None = None
    run_shown_p50_s: float | None = None

    @property
    def passed(self) -> bool:
        """Every try drew its first frame and showed the run; the median first frame under target."""
        return (
            bool(self.tries) and all(t.first_frame_s is not None and t.run_shown_s is not None for t in self.tries)
            and self.first_frame_p50_s is not None and self.first_frame_p50_s < TARGET_ATTACH_S
        )  # fmt: skip


def attach_once(run: RunDir, run_id: str) -> AttachTry:
    """Spawn `attach --readonly` on a fresh pseudo-terminal and time its first frame and the run shown."""
    master, terminal = os.openpty()
    rows, columns = SCREEN_SIZE[1], SCREEN_SIZE[0]
    fcntl.ioctl(terminal, termios.TIOCSWINSZ, struct.pack("HHHH", rows, columns, 0, 0))
    env = {k: v for k, v in os.environ.items() if k not in DROPPED_ENV} | {"TERM": "xterm-256color"}
    t0 = time.monotonic()
    try:
        proc = subprocess.Popen(
            [sys.executable, "-m", "console.cli", "attach", "--readonly", str(run.root)], stdin=terminal,
            stdout=terminal, stderr=terminal, env=env, cwd=PROJECT_ROOT, start_new_session=True,
        )  # fmt: skip
    finally:
        os.close(terminal)
    try:
        return _read_until_shown(master, proc, t0, run_id.encode())
    finally:
        _stop(proc)
        os.close(master)


def _read_until_shown(master: int, proc: subprocess.Popen, t0: float, run_id: bytes) -> AttachTry:
    written = b""
    first_frame = run_shown = None
    end = t0 + ATTACH_DEADLINE_S
    while run_shown is None and time.monotonic() < end:
        ready, _, _ = select.select([master], [], [], 0.05)
        if not ready:
            if proc.poll() is not None:
                break
            continue
        try:
            data = os.read(master, READ_BYTES)
        except OSError:  # EIO: the console closed the terminal (it exited)
            break
        now = time.monotonic() - t0
        written += data
        if first_frame is None and CURSOR_POSITION.search(written):
            first_frame = now
        if first_frame is not None and run_id in written:
            run_shown = now
    return AttachTry(first_frame, run_shown, len(written))


def _stop(proc: subprocess.Popen) -> None:
    """SIGTERM the console's process group, SIGKILL it after STOP_DEADLINE_S; always reaps."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            break
        try:
            proc.wait(STOP_DEADLINE_S)
            return
        except subprocess.TimeoutExpired:
            continue
    proc.wait(STOP_DEADLINE_S)


def attach_time(hours: float = 8, tries: int = 3, workdir: Path | None = None) -> AttachTime:
    """`attach` to first frame, `tries` times, each a fresh process, on a run with `hours` of history at 1 event/s
    and a guard record every 5 s (see the module's docstring for what is timed)."""
    with workdir_for(workdir) as base:
        run = synthetic_run(base)
        soak = SyntheticSoak.for_run(run)
        soak.progress_per_step = SyntheticSoak.events_for(max(1, int(hours * 3600)), len(soak.steps))
        history = write_history(run, soak, hours, 1.0, 0.2)
        live_state(run, soak)
        lock = RunnerLock(run)
        lock.acquire()  # the runner is alive, as during a soak
        try:
            done = [attach_once(run, soak.run_id) for _ in range(max(1, tries))]
        finally:
            lock.release()
    frames = [t.first_frame_s for t in done if t.first_frame_s is not None]
    shown = [t.run_shown_s for t in done if t.run_shown_s is not None]
    return AttachTime(
        hours=hours, events=history.events, tries=done, first_frame_p50_s=percentile(frames, 50),
        first_frame_max_s=max(frames, default=None), run_shown_p50_s=percentile(shown, 50),
    )  # fmt: skip
