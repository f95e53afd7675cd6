"""RunTail: the console's reader of one run directory, and the messages it posts to the UI.

It runs on a thread worker (`RunConsole.tail_run`) and polls every POLL_INTERVAL_S: new lines of
events.jsonl and watchdog.jsonl (at most BATCH_BYTES of each per poll), watchdog.json when it changed,
state.json (parsed again only when its inode, mtime or size moves), the runner lock and heartbeat, and
summary.json. Events are read back here, once (`parse_event`: the UI folds typed events), and go with the guard
records in one RunUpdate per poll; the next is posted only once the UI has folded the last, so attaching to a
long history holds one batch in memory, not the history. summary.json is read as its model (`read_summary`: a
damaged one says so).

The runner lock is probed before and after each read of events.jsonl: free at both (and nothing left to read)
means every event the runner wrote before it died is in what was read, so a view still "running" after it was
folded is a runner gone without `run_finished`, never a runner about to write it or one just starting.
"""

from __future__ import annotations

import signal
import subprocess
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from textual.message import Message
from textual.worker import Worker

from console.views.run_view import RunView
from engine.config_file import ConfigFileError
from runners.report.summary_model import DamagedSummary, Summary, read_summary
from runners.run.event_log import status_label
from runners.run.event_types import ReadEvent, parse_event
from runners.run.files import JsonlTail, read_json
from runners.run.rundir import RunDir, RunState, runner_alive
from runners.run.runs import load_run_plan
from runners.watchdog.heartbeat import Heartbeat

POLL_INTERVAL_S = 0.2
BATCH_BYTES = 1 << 20  # events.jsonl read per message: attaching to a long history folds it in 1 MiB steps
FOLD_WAIT_S = 0.5  # how often a worker waiting for the UI to fold its last batch checks for cancellation
RUNNER_SILENT_S = 15.0  # a runner holding its lock whose heartbeat has not moved for this long is shown silent
LAST_WORDS_BYTES = 64 << 10  # at most this much of the end of runner.log is read for a runner's last line


class RunOpened(Message):
    """The run's plan was read: every arm and step, all pending."""

    def __init__(self, view: RunView) -> None:
        super().__init__()
        self.view = view


class RunUnreadable(Message):
    """The run directory could not be read."""

    def __init__(self, reason: str) -> None:
        super().__init__()
        self.reason = reason


class RunUpdate(Message):
    """One poll's news: new events (events.jsonl lines read back, `parse_event`) and guard records (watchdog.jsonl
    lines, and watchdog.json when it changed), each in order; one message so a poll costs one repaint.
    `runner_dead` is true when no runner held the lock before or after these events were read and none are left
    to read."""

    def __init__(self, events: list[ReadEvent], records: list[dict], runner_dead: bool = False) -> None:
        super().__init__()
        self.events = events
        self.records = records
        self.runner_dead = runner_dead


@dataclass(frozen=True)
class RunnerStatus:
    """What state.json, the runner lock and heartbeat say, and how a runner this console started ended.

    `dead`: no runner held the lock before or after the events were last read, and none were left to read
    (see the module docstring); `silent_s`: whole seconds a runner holding the lock has not beaten its
    heartbeat, once that is RUNNER_SILENT_S or more; `last_words`: the last line the runner this console
    started wrote to runner.log in its own session (or how it was killed).
    """

    label: str
    alive: bool
    exit_code: int | None
    last_words: str = ""
    dead: bool = False
    silent_s: int | None = None


class RunnerChanged(Message):
    """The runner's status changed."""

    def __init__(self, status: RunnerStatus) -> None:
        super().__init__()
        self.status = status


class SummaryLoaded(Message):
    """summary.json was (re)written: its model, or what is wrong with it."""

    def __init__(self, summary: Summary | DamagedSummary) -> None:
        super().__init__()
        self.summary = summary


class StateReader:
    """state.json, parsed again only when the file changes (the worker asks five times a second)."""

    def __init__(self, run: RunDir) -> None:
        self.run = run
        self._seen: tuple[int, int, int] | None = None
        self._state: RunState | None = None
        self._label_key: tuple | None = None
        self._label = "created"

    def read(self) -> RunState | None:
        """The last state snapshot (None before the first one; a `damaged` one when it cannot be read)."""
        try:
            st = self.run.state_json.stat()
        except FileNotFoundError:
            self._seen, self._state = None, None
            return None
        seen = (st.st_ino, st.st_mtime_ns, st.st_size)  # written by atomic replace: a new inode every time
        if seen != self._seen:
            self._state = self.run.read_state()  # never raises: garbage reads as a `damaged` state
            self._seen = seen
        return self._state

    def label(self, live: bool) -> str:
        """The run's status as every display shows it (`status_label`: interrupted, incomplete, damaged ...),
        worked out again only when state.json, the event log's size or the runner's liveness changed."""
        state = self.read()
        try:
            events_size = self.run.events.stat().st_size
        except FileNotFoundError:
            events_size = -1
        key = (self._seen, events_size, live)
        if key != self._label_key:
            self._label_key = key
            self._label = status_label(self.run, state, live) if state is not None else "created"
        return self._label


def run_host(run: RunDir) -> str:
    """The runner's hostname from provenance.json ("" while there is none)."""
    try:
        host = read_json(run.provenance).get("host") or {}
    except (OSError, ValueError):
        return ""
    return str(host.get("hostname", "")) if isinstance(host, dict) else ""


class RunTail:
    """Polls `run` and posts RunOpened/RunUnreadable, then RunUpdate, RunnerChanged and SummaryLoaded.

    `runner()` is the runner process this console started, if any, and the size runner.log had before it
    was started (None: unknown); asked every poll, a resume starts a new one. `post` posts a message to the
    UI and returns False once the UI is closing; `folded` is set while no RunUpdate waits to be folded (the
    UI sets it after each fold, this tail clears it).
    """

    def __init__(
        self, run: RunDir, runner: Callable[[], tuple[subprocess.Popen | None, int | None]],
        post: Callable[[Message], bool], folded: threading.Event,
    ) -> None:  # fmt: skip
        self.run_dir = run
        self._runner = runner
        self._post = post
        self._folded = folded
        self._events = JsonlTail(run.events)
        self._guard = JsonlTail(run.watchdog_jsonl)
        self._state = StateReader(run)
        self._heartbeat = Heartbeat(run.runner_heartbeat)
        self._status: RunnerStatus | None = None
        self._guard_mtime: int | None = None
        self._summary_mtime: int | None = None

    def run(self, worker: Worker) -> None:
        """Open the run, then read it every POLL_INTERVAL_S until `worker` is cancelled (thread worker)."""
        try:
            loaded = load_run_plan(self.run_dir)
            view = RunView.for_plan(loaded.plan, self.run_dir.info()["run_id"])
            view.host = run_host(self.run_dir)
        except (ConfigFileError, OSError, ValueError, KeyError) as exc:
            self._post(RunUnreadable(f"cannot read {self.run_dir.root}: {exc}"))
            return
        self._post(RunOpened(view))
        alive = runner_alive(self.run_dir)
        while not worker.is_cancelled:
            alive_before = alive  # asked before this read (after the last): a dead runner's last events are in it
            update, behind = self.read_news()
            alive = runner_alive(self.run_dir)  # after it: a runner starting now has written nothing read
            update.runner_dead = not alive_before and not alive and not behind
            if (update.events or update.records) and not self._post_update(update, worker):
                return
            self._post_runner_status(alive, update.runner_dead)
            self._post_summary()
            if not behind:  # catching up on a long history goes on at once, one batch at a time
                time.sleep(POLL_INTERVAL_S)

    def read_news(self) -> tuple[RunUpdate, bool]:
        """New events and guard records (at most BATCH_BYTES of each file), and whether more are waiting."""
        before = self._events.offset, self._guard.offset
        events = [parse_event(line) for line in self._events.read_new(BATCH_BYTES)]
        records = self._guard.read_new(BATCH_BYTES)
        behind = self._events.offset - before[0] >= BATCH_BYTES or self._guard.offset - before[1] >= BATCH_BYTES
        try:
            mtime = self.run_dir.watchdog_json.stat().st_mtime_ns
            if mtime != self._guard_mtime:
                self._guard_mtime = mtime
                records.append(read_json(self.run_dir.watchdog_json))  # the floors live only here
        except (FileNotFoundError, ValueError):
            pass
        return RunUpdate(events, records), behind

    def _post_update(self, update: RunUpdate, worker: Worker) -> bool:
        """Post `update` once the UI has folded the last one, so catch-up holds one batch, not the history;
        False when the worker was cancelled while waiting."""
        while not self._folded.wait(FOLD_WAIT_S):
            if worker.is_cancelled:
                return False
        self._folded.clear()
        if not self._post(update):  # the app is closing: nothing will fold it
            self._folded.set()
        return True

    def _post_runner_status(self, alive: bool, dead: bool) -> None:
        label = self._state.label(alive)
        runner, log_from = self._runner()
        code = runner.poll() if runner is not None else None  # also reaps our detached runner
        last_words = ""
        if code not in (None, 0):
            last_words = self._last_words(code, log_from)
        silent = self._heartbeat.silent_for() if alive else 0.0
        silent_s = int(silent) if silent >= RUNNER_SILENT_S else None
        status = RunnerStatus(label, alive, code, last_words, dead, silent_s)
        if status != self._status:
            self._status = status
            self._post(RunnerChanged(status))

    def _last_words(self, code: int, log_from: int | None) -> str:
        """The last line the runner wrote to runner.log after `log_from` (earlier lines are other sessions'), and
        the signal that killed it, if one did."""
        killed = ""
        if code < 0:
            try:
                killed = f"killed by {signal.Signals(-code).name}"
            except ValueError:
                killed = f"killed by signal {-code}"
        lines = session_lines(self.run_dir.runner_log, log_from or 0)  # None: not known where it began
        said = lines[-1] if lines else ""
        if killed:
            return f"{killed}; {said}" if said else f"{killed}; it wrote nothing to runner.log"
        return said or "it wrote nothing to runner.log"

    def _post_summary(self) -> None:
        try:
            mtime = self.run_dir.summary_json.stat().st_mtime_ns
        except FileNotFoundError:
            return
        if mtime != self._summary_mtime:
            self._summary_mtime = mtime
            summary = read_summary(self.run_dir.summary_json)
            if summary is not None:  # None: removed since the stat; a new one has a new mtime
                self._post(SummaryLoaded(summary))


def session_lines(path: Path, start: int) -> list[str]:
    """The lines of `path` from byte `start` on (at most its last LAST_WORDS_BYTES); [] when there are none."""
    try:
        with open(path, "rb") as fh:
            size = fh.seek(0, 2)
            fh.seek(max(start, size - LAST_WORDS_BYTES))
            data = fh.read()
    except FileNotFoundError:
        return []
    return [line for line in data.decode("utf-8", errors="replace").splitlines() if line.strip()]


def log_size(path: Path) -> int:
    """The size of `path` now (0 while it does not exist): where a runner started next begins its lines."""
    try:
        return path.stat().st_size
    except FileNotFoundError:
        return 0
