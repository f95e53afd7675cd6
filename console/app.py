"""The console: a view and controller over one run directory. Quitting it never stops the soak.

A thread worker (console/run_tail.py) tails events.jsonl, state.json, the runner lock and summary.json,
and posts batched messages; the UI thread folds events into a RunView and hands it to the panels
(console/panels/, console/panels/watchdog_panel.py), nothing more. The layout is in app.tcss.
"""

from __future__ import annotations

import contextlib
import gc
import os
import select
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterable
from pathlib import Path

from rich.text import Text
from textual import events, on, work
from textual.app import App, ComposeResult, SystemCommand
from textual.containers import Horizontal, Vertical
from textual.css.query import NoMatches
from textual.screen import Screen
from textual.widgets import Static
from textual.worker import Worker, WorkerState, get_current_worker

from console.keys import CONTROL_ACTIONS, MAIN, Shown, actions_shown, bindings, screen_keys
from console.panels.current_step import CurrentStep
from console.panels.events_log import EventsLog
from console.panels.key_footer import KeyFooter
from console.panels.serve_table import ServeTable
from console.panels.step_tree import StepTree
from console.panels.summary_table import SummaryTable
from console.panels.title_bar import TitleFields, title_text
from console.panels.watchdog_panel import WatchdogPanel
from console.run_tail import (
    RunnerChanged,
    RunnerStatus,
    RunOpened,
    RunTail,
    RunUnreadable,
    RunUpdate,
    SummaryLoaded,
    log_size,
)
from console.screens.abort_screen import ConfirmAbort
from console.screens.gates_screen import GatesScreen
from console.screens.help_screen import HelpScreen
from console.screens.logs_screen import LogsScreen
from console.screens.timeline_screen import TimelineScreen
from console.views.run_view import RunView
from console.views.timeline import MemoryTimeline
from console.views.watchdog_view import WatchdogView
from runners.plan.steps import SERVE_LOG
from runners.report.summary_model import DamagedSummary, Summary
from runners.run.control import pause_requested, request_abort, request_continue, request_pause
from runners.run.incident_slot import incident_text, read_incident
from runners.run.rundir import RunDir
from runners.run.runs import spawn_detached

CLOCK_S = 1.0  # the clocks are shown at least this often
CLOCK_CHECK_S = 0.25  # how often the clock timer looks (a look that shows nothing costs no frame)


def terminal_watch(headless: bool) -> select.poll | None:
    """A poll on the terminal the console draws on, which reports its hangup (ssh dropped, tmux pane killed); None
    when it draws on none (headless, a web driver). SIGHUP alone is not enough: where it came ignored from the
    parent (nohup, some test runners) a console whose terminal is gone reads an endless EOF and spins a core."""
    if headless or not sys.__stdout__ or not sys.__stdout__.isatty():
        return None
    watch = select.poll()
    watch.register(sys.__stdout__.fileno(), 0)  # no events asked: only POLLHUP / POLLERR / POLLNVAL come back
    return watch


class RunConsole(App[None]):
    """Header, arm -> phase tree, arms table, progress, live TTFT/TPOT, event log, summary."""

    TITLE = "gb10-console"
    CSS_PATH = Path(__file__).with_name("app.tcss")  # absolute: a subclass elsewhere (tests) finds it too
    BINDINGS = bindings(MAIN)  # console/keys.py: every key, its footer title, palette entry and help
    HORIZONTAL_BREAKPOINTS = [(0, "-narrow"), (100, "-wide")]  # screen classes app.tcss fits the layout to
    VERTICAL_BREAKPOINTS = [(0, "-short"), (32, "-tall")]

    def __init__(
        self, run: RunDir, runner: subprocess.Popen | None = None, readonly: bool = False,
        runner_log_from: int | None = None,
    ) -> None:  # fmt: skip
        """`runner`: a runner this console started, and `runner_log_from` the size runner.log had before it started
        (its lines begin there; None: not known, the file's last line is quoted when it fails)."""
        super().__init__()
        self.run_dir = run
        self._launched = (runner, runner_log_from)  # one attribute: the tail's thread reads both at once
        self.readonly = readonly
        self.summary: Summary | DamagedSummary | None = None
        self.watchdog = WatchdogView()
        self.timeline = MemoryTimeline()  # the whole run's MemAvailable, at bounded resolution
        self.view: RunView | None = None
        self.runner_status = RunnerStatus("opening", False, None)
        self._folded = threading.Event()  # set while no RunUpdate is waiting to be folded
        self._folded.set()
        self._title = Text()
        self._clocks_at = -CLOCK_S  # time.monotonic() when the panels last showed the clocks
        self._stopped = ""  # why the console stopped following the run ("" while it follows it)
        self._controls: frozenset[str] = frozenset()  # the control keys shown now
        self._gates: GatesScreen | None = None  # the gates screen of the summary read last, once shown
        self._terminal: select.poll | None = None  # watches the terminal for a hangup (None: no terminal)

    @property
    def runner(self) -> subprocess.Popen | None:
        """The runner this console started last, if any."""
        return self._launched[0]

    def compose(self) -> ComposeResult:
        """The title, the step tree beside the serve table, current step and watchdog, the summary, the events."""
        yield Static(f"opening {self.run_dir.root} …", id="title")
        with Horizontal(id="body"):
            yield StepTree(id="steps")
            with Vertical(id="side"):
                yield ServeTable(id="arms")
                yield CurrentStep()
                yield WatchdogPanel(self.watchdog, id="watchdog")
        yield SummaryTable(id="summary")
        yield EventsLog()
        yield KeyFooter()

    def on_mount(self) -> None:
        """Start tailing and the clock; once the first frame is drawn, set what start-up built aside from the GC."""
        self.tail_run()
        self.set_interval(CLOCK_CHECK_S, self._tick)
        self.call_after_refresh(self._freeze_startup)
        self._terminal = terminal_watch(self.is_headless)

    def _freeze_startup(self) -> None:
        """Collect once, then freeze what is left: the modules, classes, styles and widgets built at start-up live
        as long as the console, and a full collection that walked them all paused the UI for 100-200 ms under a
        2,000 events/s tail. What is made later is collected as usual."""
        gc.collect()
        gc.freeze()

    def on_unmount(self) -> None:
        """Hand the start-up objects back to the GC (a process that goes on, such as a test run, collects them)."""
        gc.unfreeze()

    @work(thread=True, exclusive=True, group="tail", exit_on_error=False)
    def tail_run(self) -> None:
        """Read the run directory every POLL_INTERVAL_S and post what changed (thread worker)."""
        RunTail(self.run_dir, lambda: self._launched, self.post_message, self._folded).run(get_current_worker())

    def on_worker_state_changed(self, event: Worker.StateChanged) -> None:
        """A worker that failed says so (events line, notification; the title for the tail), never a frozen screen."""
        if event.state != WorkerState.ERROR:
            return
        worker = event.worker
        note = f"{worker.name} failed: {type(worker.error).__name__}: {worker.error}"
        self.notify(note, severity="error")
        with contextlib.suppress(NoMatches):  # the app is shutting down
            self._log_line(note)
            if worker.group == "tail":
                again = f"gb10-console attach {self.run_dir.root}"
                self._stopped = f"the console stopped following the run: {note}. Fix that, then: {again}"
                self.query_one("#title", Static).update(Text(self._stopped))

    @on(RunUnreadable)
    def _unreadable(self, message: RunUnreadable) -> None:
        self.query_one("#title", Static).update(Text(message.reason))
        self._log_line(message.reason)

    @on(RunOpened)
    def _opened(self, message: RunOpened) -> None:
        self.view = message.view
        now = time.time()
        self.query_one("#steps", StepTree).update_view(self.view, now)
        self.query_one("#arms", ServeTable).update_view(self.view, now)
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
        lines = []
        for event in message.events:
            self.watchdog.apply(event)  # guard_started (the floors), levels, actions, kills, guard_lost
            line = self.view.apply(event)
            if line:
                lines.append(f"{time.strftime('%H:%M:%S', time.localtime(event.t or 0))} {line}")
        self.query_one(EventsLog).add_lines(lines)
        if message.runner_dead:
            self._runner_gone()
        self.query_one("#watchdog", WatchdogPanel).update_view(self.watchdog)
        self._show_view()

    def _show_view(self) -> None:
        """Hand the view to the panels and the title."""
        if self.view is None:
            return
        now = time.time()
        with contextlib.suppress(NoMatches):  # the app is shutting down
            self.query_one("#steps", StepTree).update_view(self.view, now)
            self.query_one("#arms", ServeTable).update_view(self.view, now)
            self.query_one(CurrentStep).update_view(self.view, now)
        self._refresh_title()
        self._clocks_at = time.monotonic()

    def _runner_gone(self) -> bool:
        """No runner works on the run and the events end without run_finished: stop showing what was in flight
        as live (the view's clocks stop); True when that changed something."""
        incident = read_incident(self.run_dir)  # a runner stopped by a full disk said why where it still could
        line = self.view.runner_gone(incident_text(incident) if incident else None) if self.view is not None else None
        if line is None:
            return False
        self._log_line(f"{line}; `gb10-console run --resume {self.run_dir.root}` continues")
        return True

    @on(RunnerChanged)
    def _runner_changed(self, message: RunnerChanged) -> None:
        self.runner_status = message.status
        if message.status.exit_code not in (None, 0):
            note = f"runner exited with code {message.status.exit_code}: {message.status.last_words}"
            self._log_line(f"{note} (full log: {self.run_dir.runner_log})")
        if message.status.dead and self._runner_gone():
            self._show_view()
        self._refresh_controls()
        self._refresh_title()

    def _refresh_controls(self) -> None:
        """Show the control keys that make sense now (the footer is redrawn only when they change)."""
        controls = self.control_actions()
        if controls != self._controls:
            self._controls = controls
            self.refresh_bindings()

    def control_actions(self) -> frozenset[str]:
        """The controls that make sense now: abort and pause while a runner works on the run, resume while none
        does and it did not finish; none under --readonly or before the runner's status is known."""
        status = self.runner_status
        if self.readonly or status.label == "opening":
            return frozenset()
        if status.alive:
            return actions_shown(Shown.WHILE_RUNNER)
        return frozenset() if status.label.startswith("finished") else actions_shown(Shown.WHILE_NO_RUNNER)

    @on(SummaryLoaded)
    def _summary(self, message: SummaryLoaded) -> None:
        self.summary = message.summary
        self.query_one("#summary", SummaryTable).update_view(message.summary)
        if isinstance(message.summary, DamagedSummary):
            self._log_line(message.summary.reason)

    def _tick(self) -> None:
        """The clocks (elapsed, ETA, serve uptime, time paused) move without new events: shown again once CLOCK_S has
        passed since they were last shown (a soak's steady events show them too: one frame a second, not two). A
        terminal that hung up ends the console at once (the soak goes on: nothing of it lives in this process)."""
        if self._terminal is not None and self._terminal.poll(0):
            os._exit(128 + signal.SIGHUP)  # as SIGHUP would: Textual's exit writes to the gone terminal, and blocks
        if time.monotonic() - self._clocks_at < CLOCK_S:
            return
        self._clocks_at = time.monotonic()
        self._refresh_title()
        if self.view is not None:
            with contextlib.suppress(NoMatches):  # the app is shutting down
                now = time.time()
                self.query_one("#arms", ServeTable).update_view(self.view, now)
                if self.view.paused:
                    self.query_one(CurrentStep).update_view(self.view, now)
                    self.query_one("#steps", StepTree).update_view(self.view, now)

    def _refresh_title(self, width: int | None = None) -> None:
        view, status = self.view, self.runner_status
        if view is None or self._stopped:
            return
        now = time.time()
        label = status.label
        if status.alive:
            runner = "runner alive" if status.silent_s is None else f"RUNNER SILENT {status.silent_s}s"
            if status.silent_s is not None and view.runner_pid:
                runner += f" (pid {view.runner_pid})"
        elif view.status == "gone":
            runner = view.reason  # runner gone (pid N)
            label = "interrupted (resumable)" if label == "running" else label
        elif status.exit_code is not None:
            runner = f"runner exited ({status.exit_code})"
        else:
            runner = "runner not running"
        try:
            title = self.query_one("#title", Static)
        except NoMatches:  # a message that arrives while the app shuts down, after its widgets are gone
            return
        fields = TitleFields(view.run_id, view.host, view.plan, label, view.elapsed(now), view.eta_s(now),
                             runner, view.watchdog_level, view.paused)  # fmt: skip
        text = title_text(fields, max(20, (width or self.size.width) - 2))  # the title's padding: 1 cell a side
        if text != self._title:  # the clock moves once a second; other refreshes mostly change nothing
            height_changed = not self._title or text.plain.count("\n") != self._title.plain.count("\n")
            title.update(text, layout=height_changed)  # the first title, or a new height: a new layout
            self._title = text

    def _log_line(self, line: str) -> None:
        """Add `line` to the events log (shown when it passes the filter); dropped once the app is shutting down
        (a runner's exit can be noticed after the main screen's widgets are gone)."""
        with contextlib.suppress(NoMatches):
            self.query_one(EventsLog).add_lines([line])

    def on_resize(self, event: events.Resize) -> None:
        """The title fits itself to the new width."""
        self._refresh_title(event.size.width)

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        """A control action is shown and run only when it makes sense now (`control_actions`); never under
        --readonly."""
        return action not in CONTROL_ACTIONS or action in self.control_actions()

    def get_system_commands(self, screen: Screen) -> Iterable[SystemCommand]:
        """The command palette (ctrl+p): every console action with a palette name in console/keys.py, the
        controls only when they make sense now."""
        yield from super().get_system_commands(screen)
        controls = self.control_actions()
        for key in screen_keys(MAIN):
            if key.palette and (key.action not in CONTROL_ACTIONS or key.action in controls):
                yield SystemCommand(key.palette, key.palette_help, getattr(self, f"action_{key.action}"))

    def action_help(self) -> None:
        """Show every key."""
        self.push_screen(HelpScreen(self.readonly))

    def action_filter_events(self) -> None:
        """Show the events filter box and focus it."""
        self.query_one(EventsLog).open_filter()

    def action_logs(self) -> None:
        """Follow the serve log of the serve target started last (it changes with the arm)."""
        self.push_screen(LogsScreen(self._serve_log, f"serve log: {self.run_dir.root}"))

    def _serve_log(self) -> Path | None:
        """The serve.log to follow now (called on the logs screen's worker thread)."""
        serving = self.view.serving if self.view else None
        return self.run_dir.serve_dir(*serving) / SERVE_LOG if serving else None

    def action_timeline(self) -> None:
        """The whole run on one time axis: MemAvailable, every step's span, the verdicts."""
        if self.view is None:
            self.notify("The run is not read yet.", severity="warning")
            return
        verdicts = self.summary.verdicts if isinstance(self.summary, Summary) else {}
        self.push_screen(TimelineScreen(self.view, self.timeline, self.watchdog.floors, verdicts))

    def action_gates(self) -> None:
        """Show the gate table of the latest summary: built once per summary, so `g` again shows the same screen."""
        if self.screen is self._gates:
            return
        if self._gates is None or self._gates.summary is not self.summary or self._gates in self.screen_stack:
            self._build_gates()
        self.push_screen(self._gates)

    def _build_gates(self) -> None:
        """A gates screen for the summary read last, installed (kept when popped) in place of the one before."""
        old = self._gates
        if old is not None and old not in self.screen_stack:  # one still under another screen (the palette
            self.uninstall_screen(old)  # opened gates again over it) stays installed: rare, and one screen
            old.remove()
        self._gates = GatesScreen(self.summary)
        self.install_screen(self._gates, f"gates-{id(self._gates)}")

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
            log_from = log_size(self.run_dir.runner_log)
            self._launched = (spawn_detached(self.run_dir), log_from)
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
