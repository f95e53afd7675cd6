"""Follow a serve target's log (arms/<arm>/<mode>/serve.log) like `tail -F`, with search and error jumps.

A thread worker asks `path_for()` which file to follow and polls it every `poll_s`: it reads at most
`read_bytes` of new data per poll (at start, and after the file is replaced, truncated or too far ahead,
only its last `tail_lines` lines, read from the end) and posts at most one LogBatch per poll, then waits
until the UI has taken it. The UI thread only appends to a bounded RichLog. Search and error navigation
run over the lines held in memory, through the pure functions below.
"""

from __future__ import annotations

import bisect
import threading
import time
from collections import deque
from collections.abc import Callable
from pathlib import Path

from rich.segment import Segment
from rich.style import Style
from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.events import MouseScrollUp
from textual.message import Message
from textual.reactive import reactive
from textual.screen import Screen
from textual.strip import Strip
from textual.widgets import Input, RichLog, Static
from textual.worker import Worker, WorkerState, get_current_worker

from console.keys import LOGS, bindings
from console.panels.key_footer import KeyFooter
from console.views.log_follow import LogFollower, LogRead, find_errors, find_matches, is_error_line, step_to


class LogBatch(Message):
    """Lines, and notes about the file, from one poll of the followed log."""

    def __init__(self, read: LogRead) -> None:
        super().__init__()
        self.read = read


class LogWaiting(Message):
    """The placeholder changed: `text` says which file the screen waits for; None once one is followed."""

    def __init__(self, text: str | None) -> None:
        super().__init__()
        self.text = text

    def can_replace(self, message: Message) -> bool:
        """A newer placeholder replaces an older one still queued."""
        return isinstance(message, LogWaiting)


class LogView(RichLog):
    """A RichLog that highlights one line and stops auto-scrolling when scrolled up by hand."""

    COMPONENT_CLASSES = {"log-view--mark"}
    DEFAULT_CSS = "LogView > .log-view--mark { background: $accent 60%; text-style: bold; }"
    marked_line: reactive[int | None] = reactive(None)

    def render_line(self, y: int) -> Strip:
        """The line at `y`, highlighted when it is the marked one."""
        strip = super().render_line(y)
        if self.marked_line is None or self.scroll_offset.y + y != self.marked_line:
            return strip
        mark = self.get_component_rich_style("log-view--mark")
        return Strip([Segment(s.text, (s.style or Style()) + mark, s.control) for s in strip], strip.cell_length)

    def action_scroll_up(self) -> None:
        """Scroll up a line and stop following the end."""
        self.auto_scroll = False
        super().action_scroll_up()

    def action_page_up(self) -> None:
        """Scroll up a page and stop following the end."""
        self.auto_scroll = False
        super().action_page_up()

    def action_scroll_home(self) -> None:
        """Go to the first line and stop following the end."""
        self.auto_scroll = False
        super().action_scroll_home()

    def on_mouse_scroll_up(self, event: MouseScrollUp) -> None:
        """The wheel up stops following the end."""
        self.auto_scroll = False


class LogsScreen(Screen[None]):
    """Follows the file `path_for()` names (asked again every poll): pause, search, jump to errors."""

    DEFAULT_CSS = """
    LogsScreen { layout: vertical; }
    LogsScreen #logs-title { height: 1; background: $primary; color: $text; padding: 0 1; }
    LogsScreen #logs-placeholder { height: 1; padding: 0 1; color: $warning; display: none; }
    LogsScreen #logs-log { height: 1fr; border: round $primary-darken-2; }
    LogsScreen #logs-search { display: none; }
    LogsScreen #logs-status { height: 1; padding: 0 1; background: $boost; }
    """
    BINDINGS = bindings(LOGS)  # console/keys.py

    def __init__(
        self,
        path_for: Callable[[], Path | None],
        title: str,
        *,
        max_lines: int = 5000,
        tail_lines: int = 2000,
        poll_s: float = 0.2,
        read_bytes: int = 256 << 10,
    ) -> None:
        """`path_for` is called on the worker thread every poll; it must be quick and only read state."""
        super().__init__()
        self.path_for = path_for
        self.title = title
        self.max_lines, self.tail_lines, self.poll_s, self.read_bytes = max_lines, tail_lines, poll_s, read_bytes
        self.path: Path | None = None  # the file followed now
        self.lines_read = 0  # lines taken from files (shown, held or skipped)
        self.bytes_read = 0
        self.paused = False
        self.search_text = ""
        self._buffer: deque[str] = deque(maxlen=max_lines)  # what the RichLog shows, line for line
        self._appended = 0  # lines ever appended to the buffer: buffer[0] is line number _appended - len
        # (line, style) that arrived while paused; one short of max_lines so the "not shown" note fits too
        self._held: deque[tuple[str, str]] = deque(maxlen=max(1, max_lines - 1))
        self._held_new = 0
        self._held_lost = 0
        self._mark: int | None = None  # line number (as _appended counts) of the highlighted line
        self._nav: str | None = None  # "match" or "error": what the highlight is
        self._nav_note = ""
        self._searching = False
        self._drained = threading.Event()  # set when the UI has taken the last batch
        self._drained.set()

    def compose(self) -> ComposeResult:
        """Title, placeholder, the log, the (hidden) search box, the status line, the footer."""
        yield Static(self.title or "log", id="logs-title", markup=False)
        yield Static("", id="logs-placeholder", markup=False)
        yield LogView(id="logs-log", max_lines=self.max_lines, wrap=False, markup=False, min_width=20)
        yield Input(placeholder="search (ignores case) — enter: next match, esc: cancel", id="logs-search")
        yield Static("", id="logs-status", markup=False)
        yield KeyFooter()

    def on_mount(self) -> None:
        """Start following."""
        log = self.query_one(LogView)
        log.focus()
        self.watch(log, "auto_scroll", lambda _: self._refresh_status(), init=False)
        self._refresh_status()
        self.follow_log()

    @work(thread=True, exclusive=True, group="serve-log", exit_on_error=False)
    def follow_log(self) -> None:
        """Poll the file path_for() names every poll_s; post one LogBatch per poll (thread worker)."""
        worker = get_current_worker()
        room = self.max_lines - 8 if self.max_lines > 16 else self.max_lines  # room for notes above a burst
        follower = LogFollower(self.tail_lines, self.read_bytes, max_lines=room)
        waiting: object = ...
        while not worker.is_cancelled:
            try:
                read = follower.poll(self.path_for())
            except Exception as exc:  # path_for is the host's code: show what failed, ask again next poll
                read = LogRead(None, waiting=f"cannot tell which file to follow: {exc!r}")
            if read.waiting != waiting:
                waiting = read.waiting
                self.post_message(LogWaiting(read.waiting))
            if read.lines or read.notes or read.dropped:
                self._drained.clear()
                self.post_message(LogBatch(read))
                while not self._drained.wait(self.poll_s):  # one batch in flight: a stalled UI stalls reading
                    if worker.is_cancelled:
                        return
            time.sleep(self.poll_s)

    def on_worker_state_changed(self, event: Worker.StateChanged) -> None:
        """A follower that failed says so in the placeholder."""
        if event.worker.group == "serve-log" and event.state == WorkerState.ERROR:
            self._show_placeholder(f"the log follower stopped: {event.worker.error!r}; reopen this screen")

    @on(LogWaiting)
    def _waiting(self, message: LogWaiting) -> None:
        self._show_placeholder(message.text)

    def _show_placeholder(self, text: str | None) -> None:
        placeholder = self.query_one("#logs-placeholder", Static)
        placeholder.update(f"{self.title}: {text}" if text else "")
        placeholder.display = text is not None

    @on(LogBatch)
    def _batch(self, message: LogBatch) -> None:
        try:
            read = message.read
            self.path, self.bytes_read = read.path, read.bytes_read
            self.lines_read += len(read.lines) + read.dropped
            entries = [(f"── {note} ──", "dim italic") for note in read.notes]
            if read.dropped:
                entries.append((f"── {read.dropped:,} lines arrived at once; only the last ones are kept ──", "dim"))
            entries += [(line, "red" if is_error_line(line) else "") for line in read.lines]
            if self.paused:
                self._held_lost += max(0, len(self._held) + len(entries) - (self._held.maxlen or 0))
                self._held.extend(entries)
                self._held_new += len(read.lines) + read.dropped
            else:
                self._append(entries)
            self._refresh_status()
        finally:
            self._drained.set()

    def _append(self, entries: list[tuple[str, str]]) -> None:
        """Write `entries` to the log (one write, one line each) and to the buffer search reads."""
        if not entries:
            return
        text = Text()
        for i, (line, style) in enumerate(entries):
            if i:
                text.append("\n")
            text.append(line, style=style)
        self._buffer.extend(line for line, _ in entries)
        self._appended += len(entries)
        log = self.query_one(LogView)
        log.write(text, shrink=False)
        log.marked_line = self._mark_index()

    def _mark_index(self) -> int | None:
        first = self._appended - len(self._buffer)
        if self._mark is None or self._mark < first:
            return None
        return self._mark - first

    def _refresh_status(self) -> None:
        log = self.query_one(LogView)
        parts = [str(self.path) if self.path else "no file yet", f"{self.lines_read:,} lines read"]
        if self.paused:
            parts.append(f"paused — {self._held_new:,} new lines")
        else:
            parts.append("following" if log.auto_scroll else "following; view held (G: bottom)")
        note = self._position_note()
        if note:
            parts.append(note)
        self.query_one("#logs-status", Static).update("  ·  ".join(parts))

    def _position_note(self) -> str:
        index = self._mark_index()
        if self._nav is None or index is None:
            return self._nav_note
        if self._nav == "match":
            found = find_matches(self._buffer, self.search_text)
            return f"match {bisect.bisect_left(found, index) + 1} of {len(found)} for “{self.search_text}”"
        found = find_errors(self._buffer)
        return f"error {bisect.bisect_left(found, index) + 1} of {len(found)}"

    def _reference(self, forward: bool) -> int:
        """Where n/N/e/E start: the highlighted line, else the lines in view."""
        index = self._mark_index()
        if index is not None:
            return index
        log = self.query_one(LogView)
        top = round(log.scroll_y)
        return top - 1 if forward else top + log.scrollable_content_region.height

    def _jump(self, nav: str, found: list[int], forward: bool, none_note: str) -> None:
        k = step_to(found, self._reference(forward), forward)
        if k is None:
            self._mark, self._nav, self._nav_note = None, None, none_note
            self.query_one(LogView).marked_line = None
            self._refresh_status()
            return
        index = found[k]
        self._mark = self._appended - len(self._buffer) + index
        self._nav, self._nav_note = nav, ""
        log = self.query_one(LogView)
        log.auto_scroll = False
        log.marked_line = index
        log.scroll_to(y=max(0, index - log.scrollable_content_region.height // 2), animate=False)
        self._refresh_status()

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        """While the search box is open only escape (close it) works; keys go to the box."""
        return action == "close" or not self._searching

    def action_toggle_pause(self) -> None:
        """space: hold new lines (up to max_lines), or show the held ones and follow the end again."""
        if not self.paused:
            self.paused = True
            self._refresh_status()
            return
        held = list(self._held)
        if self._held_lost:
            lost = f"{self._held_lost:,} line{'s' if self._held_lost > 1 else ''}"
            held.insert(0, (f"── not shown: {lost} that arrived while paused (the held lines are bounded) ──", "dim"))
        self.paused, self._held_new, self._held_lost = False, 0, 0
        self._held.clear()
        self._append(held)
        self.action_follow_bottom()

    def action_search(self) -> None:
        """/: open the search box."""
        box = self.query_one("#logs-search", Input)
        box.value = self.search_text
        box.display = True
        self._searching = True
        self.refresh_bindings()
        box.focus()

    @on(Input.Submitted, "#logs-search")
    def _search_submitted(self, event: Input.Submitted) -> None:
        event.stop()
        self._close_search()
        self.search_text = event.value
        if not self.search_text:
            self._mark, self._nav, self._nav_note = None, None, ""
            self.query_one(LogView).marked_line = None
            self._refresh_status()
            return
        self.action_match(True)

    def _close_search(self) -> None:
        self.query_one("#logs-search", Input).display = False
        self._searching = False
        self.refresh_bindings()
        self.query_one(LogView).focus()

    def action_match(self, forward: bool) -> None:
        """n / N: the next / previous line containing the search text."""
        if not self.search_text:
            self._nav_note = "no search yet (/ to search)"
            self._refresh_status()
            return
        found = find_matches(self._buffer, self.search_text)
        self._jump(
            "match", found, forward, f"no match for “{self.search_text}” in the last {len(self._buffer):,} lines"
        )

    def action_error(self, forward: bool) -> None:
        """e / E: the next / previous error line."""
        self._jump(
            "error", find_errors(self._buffer), forward, f"no error lines in the last {len(self._buffer):,} lines"
        )

    def action_follow_bottom(self) -> None:
        """G / end: go to the last line and scroll with new lines again."""
        log = self.query_one(LogView)
        self._mark, self._nav, self._nav_note = None, None, ""
        log.marked_line = None
        log.auto_scroll = True
        log.scroll_end(animate=False)
        self._refresh_status()

    def action_close(self) -> None:
        """escape / l: close the search box if open, else this screen."""
        if self._searching:
            self._close_search()
            return
        self.app.pop_screen()
