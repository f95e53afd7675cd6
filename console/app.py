"""The console: a view and controller over one run directory. Quitting it never stops the soak.

A thread worker tails events.jsonl, state.json, the runner lock and summary.json, and posts
batched messages; the UI thread folds events into a RunView and updates widgets, nothing more.
"""

from __future__ import annotations

import contextlib
import subprocess
import threading
import time
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from rich.text import Text
from textual import events, on, work
from textual.app import App, ComposeResult, SystemCommand
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.css.query import NoMatches
from textual.message import Message
from textual.screen import Screen
from textual.widgets import DataTable, Footer, Input, ProgressBar, RichLog, Static, Tree
from textual.widgets.tree import TreeNode
from textual.worker import get_current_worker

from console.gates_screen import GatesScreen
from console.logs_screen import LogsScreen
from console.screens import ConfirmAbort, HelpScreen
from console.timeline_screen import TimelineScreen
from console.title_bar import TitleFields, title_text
from console.views.run_view import RunView, StepView
from console.views.timeline import MemoryTimeline
from console.views.watchdog_view import WatchdogView
from console.watchdog_panel import WatchdogPanel
from engine.config_file import ConfigFileError
from runners.plan.steps import StepKey
from runners.run.control import pause_requested, request_abort, request_continue, request_pause
from runners.run.files import JsonlTail, read_json, tail_lines
from runners.run.rundir import RunDir, RunState, runner_alive
from runners.soak.execute import load_run_plan, spawn_detached

POLL_INTERVAL_S = 0.2
BATCH_BYTES = 1 << 20  # events.jsonl read per message: attaching to a long history folds it in 1 MiB steps
FOLD_WAIT_S = 0.5  # how often a worker waiting for the UI to fold its last batch checks for cancellation
ARM_COLUMNS = ("arm", "WO_SPLIT", "env", "serve", "health", "up", "restarts")  # steps: see the tree
EVENT_LINES = 2000  # event lines kept (and shown unfiltered)


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
    """One poll's news: new events (events.jsonl) and guard records (watchdog.jsonl lines, and watchdog.json
    when it changed), each in order; one message so a poll costs one repaint."""

    def __init__(self, events: list[dict], records: list[dict]) -> None:
        super().__init__()
        self.events = events
        self.records = records


@dataclass(frozen=True)
class RunnerStatus:
    """What state.json and the runner lock say, and how a runner this console started ended."""

    label: str
    alive: bool
    exit_code: int | None
    last_words: str = ""


class _StateReader:
    """state.json, parsed again only when the file changes (the worker asks five times a second)."""

    def __init__(self, run: RunDir) -> None:
        self.run = run
        self._seen: tuple[int, int, int] | None = None
        self._state: RunState | None = None

    def read(self) -> RunState | None:
        """The last state snapshot (None before the first one or while it is unreadable)."""
        try:
            st = self.run.state_json.stat()
        except FileNotFoundError:
            return None
        seen = (st.st_ino, st.st_mtime_ns, st.st_size)  # written by atomic replace: a new inode every time
        if seen != self._seen:
            try:
                self._state = self.run.read_state()
            except (ValueError, FileNotFoundError):
                self._state = None
            self._seen = seen
        return self._state


class RunnerChanged(Message):
    """The runner's status changed."""

    def __init__(self, status: RunnerStatus) -> None:
        super().__init__()
        self.status = status


class SummaryLoaded(Message):
    """summary.json was (re)written."""

    def __init__(self, summary: dict) -> None:
        super().__init__()
        self.summary = summary


def _ms(value: float | None, digits: int = 1) -> str:
    return "n/a" if value is None else f"{value:.{digits}f}"


def _host(run: RunDir) -> str:
    """The runner's hostname from provenance.json ("" while there is none); called from the worker."""
    try:
        host = read_json(run.provenance).get("host") or {}
    except (OSError, ValueError):
        return ""
    return str(host.get("hostname", "")) if isinstance(host, dict) else ""


class RunConsole(App[None]):
    """Header, arm -> phase tree, arms table, progress, live TTFT/TPOT, event log, summary."""

    TITLE = "gb10-console"
    CSS = """
    #title { height: auto; max-height: 3; background: $primary; color: $text; padding: 0 1; }
    #body { height: 1fr; }
    #steps { width: 34%; min-width: 30; border: round $primary; }
    #side { width: 1fr; }
    #arms { height: auto; max-height: 8; border: round $primary; }
    #current { height: 1; padding: 0 1; }
    #progress { height: 1; padding: 0 1; }
    #live { height: 1; padding: 0 1; color: $text-muted; }
    #watchdog { border: round $primary-darken-2; }
    #summary { height: auto; max-height: 8; border: round $success; display: none; }
    #events { height: 9; border: round $primary-darken-2; }
    #events-filter { display: none; height: 3; }
    """
    BINDINGS = [
        Binding("q", "quit", "Quit (soak keeps running)"),
        Binding("question_mark", "help", "Help"),
        Binding("a", "abort", "Abort"),
        Binding("r", "resume", "Resume"),
        Binding("p", "pause", "Pause/continue"),
        Binding("g", "gates", "Gates"),
        Binding("l", "logs", "Logs"),
        Binding("f", "filter_events", "Filter events"),
        Binding("t", "timeline", "Timeline"),
    ]
    CONTROL_ACTIONS = frozenset({"abort", "resume", "pause"})  # what --readonly takes away

    def __init__(self, run: RunDir, runner: subprocess.Popen | None = None, readonly: bool = False) -> None:
        super().__init__()
        self.run_dir = run
        self.runner = runner
        self.readonly = readonly
        self.summary: dict | None = None
        self.watchdog = WatchdogView()
        self.timeline = MemoryTimeline()  # the whole run's MemAvailable, at bounded resolution
        self._event_lines: deque[str] = deque(maxlen=EVENT_LINES)  # every shown event line, for the filter
        self._event_filter = ""
        self._arm_rows: list[tuple[str, ...]] = []  # what the serve panel shows
        self.view: RunView | None = None
        self.runner_status = RunnerStatus("opening", False, None)
        self._step_nodes: dict[StepKey, TreeNode] = {}
        self._folded = threading.Event()  # set while no RunUpdate is waiting to be folded
        self._folded.set()
        self._title = Text()

    def compose(self) -> ComposeResult:
        yield Static(f"opening {self.run_dir.root} …", id="title")
        with Horizontal(id="body"):
            yield Tree("steps", id="steps")
            with Vertical(id="side"):
                yield DataTable(id="arms", cursor_type="none", zebra_stripes=True)
                yield Static("", id="current")
                yield ProgressBar(id="progress", show_eta=False)
                yield Static("", id="live")
                yield WatchdogPanel(self.watchdog, id="watchdog")
        yield DataTable(id="summary", cursor_type="none")
        yield Input(placeholder="filter events (ignores case); esc clears", id="events-filter")
        yield RichLog(id="events", wrap=False, markup=False, max_lines=EVENT_LINES)
        yield Footer()

    def on_mount(self) -> None:
        """Set up tables and start tailing."""
        arms = self.query_one("#arms", DataTable)
        arms.border_title = "arms"
        arms.add_columns(*ARM_COLUMNS)
        self.query_one("#steps", Tree).border_title = "arm → phase"
        self.query_one("#events", RichLog).border_title = "events"
        self.query_one("#watchdog", WatchdogPanel).border_title = "memory watchdog"
        self.tail_run()
        self.set_interval(1.0, self._tick)

    @work(thread=True, exclusive=True, group="tail", exit_on_error=False)
    def tail_run(self) -> None:
        """Read the run directory every POLL_INTERVAL_S and post what changed (thread worker)."""
        worker = get_current_worker()
        try:
            loaded = load_run_plan(self.run_dir)
            view = RunView.for_plan(loaded.plan, self.run_dir.info()["run_id"])
            view.host = _host(self.run_dir)
        except (ConfigFileError, OSError, ValueError, KeyError) as exc:
            self.post_message(RunUnreadable(f"cannot read {self.run_dir.root}: {exc}"))
            return
        self.post_message(RunOpened(view))
        tail = JsonlTail(self.run_dir.events)
        guard_tail = JsonlTail(self.run_dir.watchdog_jsonl)
        last_status: RunnerStatus | None = None
        summary_mtime = guard_mtime = None
        state = _StateReader(self.run_dir)
        while not worker.is_cancelled:
            before = tail.offset, guard_tail.offset
            events = tail.read_new(BATCH_BYTES)
            records = guard_tail.read_new(BATCH_BYTES)
            behind = tail.offset - before[0] >= BATCH_BYTES or guard_tail.offset - before[1] >= BATCH_BYTES
            try:
                mtime = self.run_dir.watchdog_json.stat().st_mtime_ns
                if mtime != guard_mtime:
                    guard_mtime = mtime
                    records.append(read_json(self.run_dir.watchdog_json))  # the floors live only here
            except (FileNotFoundError, ValueError):
                pass
            if (events or records) and not self._post_update(RunUpdate(events, records)):
                return
            status = self._read_runner_status(state)
            if status != last_status:
                last_status = status
                self.post_message(RunnerChanged(status))
            try:
                mtime = self.run_dir.summary_json.stat().st_mtime_ns
                if mtime != summary_mtime:
                    summary_mtime = mtime
                    self.post_message(SummaryLoaded(read_json(self.run_dir.summary_json)))
            except (FileNotFoundError, ValueError):
                pass
            if not behind:  # catching up on a long history goes on at once, one batch at a time
                time.sleep(POLL_INTERVAL_S)

    def _post_update(self, update: RunUpdate) -> bool:
        """Post `update` once the UI has folded the last one, so catch-up holds one batch, not the history;
        False when the worker was cancelled while waiting."""
        worker = get_current_worker()
        while not self._folded.wait(FOLD_WAIT_S):
            if worker.is_cancelled:
                return False
        self._folded.clear()
        if not self.post_message(update):  # the app is closing: nothing will fold it
            self._folded.set()
        return True

    def _read_runner_status(self, reader: _StateReader) -> RunnerStatus:
        state = reader.read()
        code = self.runner.poll() if self.runner is not None else None  # also reaps our detached runner
        label = state.label() if state else "created"
        last_words = ""
        if code not in (None, 0):
            last_words = next(iter(tail_lines(self.run_dir.runner_log, 1)), "")
        return RunnerStatus(label, runner_alive(self.run_dir), code, last_words)

    @on(RunUnreadable)
    def _unreadable(self, message: RunUnreadable) -> None:
        self.query_one("#title", Static).update(Text(message.reason))
        self._log_line(message.reason)

    @on(RunOpened)
    def _opened(self, message: RunOpened) -> None:
        self.view = message.view
        tree = self.query_one("#steps", Tree)
        tree.root.set_label(f"plan {self.view.plan}")
        tree.root.expand()
        arms: dict[str, TreeNode] = {}
        for key, step in self.view.steps.items():
            if key.arm not in arms:
                arms[key.arm] = tree.root.add(Text(key.arm), expand=True)
            self._step_nodes[key] = arms[key.arm].add_leaf(self._step_label(step))
        self._refresh_arms()
        self._refresh_title()

    @on(RunUpdate)
    def _update(self, message: RunUpdate) -> None:
        try:
            self._fold(message)
        finally:
            self._folded.set()

    def _fold(self, message: RunUpdate) -> None:
        for record in message.records:
            self.watchdog.apply(record)
            self.timeline.add_record(record)
        if self.view is None or not message.events:
            self.query_one("#watchdog", WatchdogPanel).update_view(self.watchdog)
            return
        log = self.query_one("#events", RichLog)
        for event in message.events:
            self.watchdog.apply(event)  # guard_started (the floors), levels, actions, kills, guard_lost
            line = self.view.apply(event)
            if line:
                self._log_line(f"{time.strftime('%H:%M:%S', time.localtime(event.get('t', 0)))} {line}", log)
        self.query_one("#watchdog", WatchdogPanel).update_view(self.watchdog)
        for key, node in self._step_nodes.items():
            label = self._step_label(self.view.steps[key])
            if label.plain != node.label.plain:  # relabel only what changed
                node.set_label(label)
        self._refresh_arms()
        self._refresh_current()
        self._refresh_title()

    @on(RunnerChanged)
    def _runner_changed(self, message: RunnerChanged) -> None:
        self.runner_status = message.status
        if message.status.exit_code not in (None, 0):
            note = f"runner exited with code {message.status.exit_code}: {message.status.last_words}"
            self._log_line(f"{note} (full log: {self.run_dir.runner_log})")
        self._refresh_title()

    @on(SummaryLoaded)
    def _summary(self, message: SummaryLoaded) -> None:
        self.summary = message.summary
        table = self.query_one("#summary", DataTable)
        table.clear(columns=True)
        table.border_title = f"summary: {message.summary.get('status')}"
        table.add_columns("arm", "WO_SPLIT", "ok", "failed", "wall s", "TTFT p50/p95", "TPOT p50/p95", "tok/s")
        for row in message.summary.get("arms", []):
            s = row["stats"]
            table.add_row(
                row["arm"], row["effective_wo_split"], str(s["ok"]), str(s["failed"]), _ms(s["wall_s"], 2),
                f"{_ms(s['ttft_p50_ms'])}/{_ms(s['ttft_p95_ms'])}",
                f"{_ms(s['tpot_p50_ms'], 2)}/{_ms(s['tpot_p95_ms'], 2)}", _ms(s["output_tok_s"]),
            )  # fmt: skip
        table.display = True

    @staticmethod
    def _step_label(step: StepView) -> Text:
        key = step.key
        progress = f" {step.completed}/{step.total}" if step.total else ""
        took = step.duration(time.time())
        clock = f" {took:.0f}s" if took is not None else ""
        reason = f" — {step.reason[:60]}" if step.status == "failed" and step.reason else ""
        return Text(f"{step.icon} {key.phase} #{key.rep} ({key.mode}){progress}{clock}{reason}")

    def _refresh_arms(self) -> None:
        """Redraw the serve panel when a row changed (it is asked every second and on every batch of events)."""
        if self.view is None:
            return
        table = self.query_one("#arms", DataTable)
        title = f"serve: {self.view.target}" if self.view.target else "arms"
        if table.border_title != title:
            table.border_title = title
        now = time.time()
        rows = []
        for name, arm in self.view.arms.items():
            wo_split = (arm.effective or {}).get("CUTE_WO_SPLIT", "-")
            up = arm.uptime(now)
            uptime = time.strftime("%H:%M:%S", time.gmtime(up)) if up is not None else "-"
            rows.append((name, wo_split, arm.env_status, arm.serve, arm.health_text(now), uptime, str(arm.restarts)))
        if rows == self._arm_rows:
            return
        self._arm_rows = rows
        table.clear(columns=True)  # column widths follow what is shown now, not the widest value ever shown
        table.add_columns(*ARM_COLUMNS)
        for row in rows:
            table.add_row(*row, key=row[0])

    def _refresh_current(self) -> None:
        step = self.view.current_step() if self.view else None
        bar = self.query_one("#progress", ProgressBar)
        if step is None:
            done = sum(s.status in ("done", "skipped") for s in self.view.steps.values()) if self.view else 0
            total = len(self.view.steps) if self.view else 0
            self.query_one("#current", Static).update(f"no step in flight; {done}/{total} steps done")
            bar.update(total=max(total, 1), progress=done)
            self.query_one("#live", Static).update("")
            return
        live = step.live
        tokens = live.get("output_tokens")
        self.query_one("#current", Static).update(
            f"▶ {step.key.path}: {step.completed}/{step.total} requests"
            + (f", {tokens:,} tokens" if isinstance(tokens, int) else "")
        )
        bar.update(total=max(step.total, 1), progress=step.completed)
        errors = live.get("errors") or {}
        failed = f"   failed {step.failed}" + (
            f" ({', '.join(f'{k} {n}' for k, n in errors.items())})" if errors else ""
        )
        self.query_one("#live", Static).update(
            f"TTFT p50/p95 {_ms(live.get('ttft_p50_ms'))}/{_ms(live.get('ttft_p95_ms'))} ms   "
            f"TPOT {_ms(live.get('tpot_p50_ms'), 2)}/{_ms(live.get('tpot_p95_ms'), 2)}   "
            f"ITL {_ms(live.get('itl_p50_ms'), 2)}/{_ms(live.get('itl_p95_ms'), 2)} ms"
            + (failed if step.failed else "")
        )

    def _tick(self) -> None:
        """Once a second: the clocks (elapsed, ETA, serve uptime) move without new events."""
        self._refresh_title()
        with contextlib.suppress(NoMatches):  # the app is shutting down
            self._refresh_arms()

    def _refresh_title(self, width: int | None = None) -> None:
        view, status = self.view, self.runner_status
        if view is None:
            return
        now = time.time()
        if status.alive:
            runner = "runner alive"
        elif status.exit_code is not None:
            runner = f"runner exited ({status.exit_code})"
        else:
            runner = "runner not running"
        try:
            title = self.query_one("#title", Static)
        except NoMatches:  # a message that arrives while the app shuts down, after its widgets are gone
            return
        fields = TitleFields(view.run_id, view.host, view.plan, status.label, view.elapsed(now), view.eta_s(now),
                             runner, view.watchdog_level, view.paused)  # fmt: skip
        text = title_text(fields, max(20, (width or self.size.width) - 2))  # the title's padding: 1 cell a side
        if text != self._title:  # the clock moves once a second; other refreshes mostly change nothing
            self._title = text
            title.update(text)

    def on_resize(self, event: events.Resize) -> None:
        """The title fits itself to the new width."""
        self._refresh_title(event.size.width)

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        """--readonly: the control actions are neither shown nor run."""
        return not (self.readonly and action in self.CONTROL_ACTIONS)

    def get_system_commands(self, screen: Screen) -> Iterable[SystemCommand]:
        """The command palette (ctrl+p): every console action, less the controls under --readonly."""
        yield from super().get_system_commands(screen)
        yield SystemCommand("Gates", "Every gate of the latest summary, with verdicts (g)", self.action_gates)
        yield SystemCommand("Help", "Every key of the console (?)", self.action_help)
        yield SystemCommand("Timeline", "The whole run: memory, step spans, verdicts (t)", self.action_timeline)
        yield SystemCommand(
            "Filter events", "Show only event lines containing some text (f)", self.action_filter_events
        )
        yield SystemCommand("Serve log", "Follow the serve target's log: search, pause, jump to errors (l)",
                            self.action_logs)  # fmt: skip
        if not self.readonly:
            yield SystemCommand("Abort the soak", "Stop dispatch and the serve target; stays resumable (a)",
                                self.action_abort)  # fmt: skip
            yield SystemCommand("Resume the run", "Start a runner that continues the steps not DONE (r)",
                                self.action_resume)  # fmt: skip
            yield SystemCommand("Pause or continue dispatch", "Hold new requests; those in flight finish (p)",
                                self.action_pause)  # fmt: skip

    def action_help(self) -> None:
        """Show every key."""
        self.push_screen(HelpScreen(self.readonly))

    def _log_line(self, line: str, log: RichLog | None = None) -> None:
        """Keep `line` for filtering and show it when it passes the current filter."""
        self._event_lines.append(line)
        if not self._event_filter or self._event_filter in line.lower():
            (log or self.query_one("#events", RichLog)).write(line)

    def action_filter_events(self) -> None:
        """Show the events filter box and focus it."""
        box = self.query_one("#events-filter", Input)
        box.display = True
        box.focus()

    @on(Input.Changed, "#events-filter")
    def _filter_changed(self, event: Input.Changed) -> None:
        self._event_filter = event.value.strip().lower()
        log = self.query_one("#events", RichLog)
        log.clear()
        shown = [line for line in self._event_lines if not self._event_filter or self._event_filter in line.lower()]
        for line in shown:
            log.write(line)
        log.border_title = f"events matching “{event.value.strip()}”: {len(shown)}" if self._event_filter else "events"

    def on_key(self, event) -> None:
        """esc in the events filter clears it and hides the box."""
        box = self.query_one("#events-filter", Input)
        if event.key == "escape" and box.has_focus:
            event.stop()
            box.value = ""
            box.display = False
            self.set_focus(None)

    def action_logs(self) -> None:
        """Follow the serve log of the serve target started last (it changes with the arm)."""
        self.push_screen(LogsScreen(self._serve_log, f"serve log: {self.run_dir.root}"))

    def _serve_log(self) -> Path | None:
        """The serve.log to follow now (called on the logs screen's worker thread)."""
        serving = self.view.serving if self.view else None
        return self.run_dir.serve_dir(*serving) / "serve.log" if serving else None

    def action_timeline(self) -> None:
        """The whole run on one time axis: MemAvailable, every step's span, the verdicts."""
        if self.view is None:
            self.notify("The run is not read yet.", severity="warning")
            return
        verdicts = (self.summary or {}).get("verdicts") or {}
        self.push_screen(TimelineScreen(self.view, self.timeline, self.watchdog.floors, verdicts))

    def action_gates(self) -> None:
        """Show the gate table of the latest summary."""
        self.push_screen(GatesScreen(self.summary))

    def action_abort(self) -> None:
        """Ask, then ask the runner to abort."""
        if self.readonly:
            return
        if not self.runner_status.alive:
            self.notify("No runner is working on this run; nothing to abort.", severity="warning")
            return
        what = self.view.run_id if self.view else str(self.run_dir.root)

        def answered(yes: bool | None) -> None:
            if yes:
                self.send_abort()

        self.push_screen(ConfirmAbort(what), answered)

    def action_pause(self) -> None:
        """Hold dispatch, or let it continue (the runner acts within a fraction of a second)."""
        if self.readonly:
            return
        if not self.runner_status.alive:
            self.notify("No runner is working on this run; nothing to pause.", severity="warning")
            return
        self.toggle_pause()

    @work(thread=True, group="control")
    def toggle_pause(self) -> None:
        """Write or remove control/pause.json (thread worker: file I/O stays off the UI thread)."""
        try:
            if pause_requested(self.run_dir) is None:
                request_pause(self.run_dir, by="console")
                note = "Pausing dispatch: requests in flight finish, no new ones start. p continues."
            else:
                request_continue(self.run_dir)
                note = "Dispatch continues."
        except OSError as exc:
            self.call_from_thread(self.notify, f"could not pause or continue: {exc}", severity="error")
            return
        self.call_from_thread(self.notify, note)

    def action_resume(self) -> None:
        """Start a detached runner that continues an aborted or failed run (DONE steps are skipped)."""
        if self.readonly:
            return
        status = self.runner_status
        if status.alive:
            self.notify("The soak is running; there is nothing to resume.", severity="warning")
            return
        if status.label.startswith("finished"):
            self.notify("This run finished; there is nothing to resume.")
            return
        self.start_runner()

    @work(thread=True, group="control")
    def start_runner(self) -> None:
        """Spawn `python -m runners.execute RUN_DIR` (thread worker: process start stays off the UI thread)."""
        try:
            self.runner = spawn_detached(self.run_dir)
        except OSError as exc:
            self.call_from_thread(self.notify, f"could not start a runner: {exc}", severity="error")
            return
        self.call_from_thread(
            self.notify, f"Resuming: runner pid {self.runner.pid} continues the steps that are not DONE."
        )

    @work(thread=True, group="control")
    def send_abort(self) -> None:
        """Write the abort request (thread worker: file I/O stays off the UI thread)."""
        try:
            request_abort(self.run_dir, "operator pressed a in the console", by="console")
        except OSError as exc:
            self.call_from_thread(self.notify, f"could not request abort: {exc}", severity="error")
            return
        self.call_from_thread(self.notify, "Abort requested; the runner stops dispatch and the serve target.")
