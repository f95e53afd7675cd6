"""Follow a serve target's log (arms/<arm>/<mode>/serve.log) like `tail -F`, with search and error jumps.

A thread worker asks `path_for()` which file to follow and polls it every `poll_s`: it reads at most
`read_bytes` of new data per poll (at start, and after the file is replaced, truncated or too far ahead,
only its last `tail_lines` lines, read from the end) and posts at most one LogBatch per poll, then waits
until the UI has taken it. The UI thread only appends to a bounded RichLog. Search and error navigation
run over the lines held in memory, through the pure functions below.
"""

from __future__ import annotations

import bisect
import os
import re
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from rich.segment import Segment
from rich.style import Style
from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.events import MouseScrollUp
from textual.message import Message
from textual.reactive import reactive
from textual.screen import Screen
from textual.strip import Strip
from textual.widgets import Footer, Input, RichLog, Static
from textual.worker import Worker, WorkerState, get_current_worker

# A line is an error line when it matches error|exception|traceback|fatal|killed|oom|out of memory|cuda error,
# ignoring case, with "oom" only at the start of a word ("OOM", "oom-kill"; not "room", "bloom"). Plain
# substring tests: 15x faster than the one alternation regex, and run on every line read.
ERROR_WORDS = ("error", "exception", "traceback", "fatal", "killed", "out of memory")  # "cuda error" ⊂ "error"
_OOM = re.compile(r"\boom")
MAX_LINE_CHARS = 2000  # longer lines are cut for display (and search)
MAX_LINE_BYTES = 64 << 10  # a line without a newline that grows past this is shown as it is
HEAD_BYTES = 64  # the file's first bytes: when they change, the file was rewritten
_ANSI_ESCAPE = re.compile(r"\x1b\[[0-?]*[ -/]*[@-~]|\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)|\x1b[@-_]")
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f]")


def is_error_line(line: str) -> bool:
    """True for a line reporting a failure: error, exception, traceback, fatal, killed, OOM, CUDA error."""
    low = line.lower()
    for word in ERROR_WORDS:
        if word in low:
            return True
    return "oom" in low and _OOM.search(low) is not None


def find_matches(lines: Sequence[str], query: str) -> list[int]:
    """Indices of the lines containing `query`, ignoring case; none for an empty query."""
    needle = query.casefold()
    if not needle:
        return []
    return [i for i, line in enumerate(lines) if needle in line.casefold()]


def find_errors(lines: Sequence[str]) -> list[int]:
    """Indices of the lines `is_error_line` flags."""
    return [i for i, line in enumerate(lines) if is_error_line(line)]


def step_to(positions: Sequence[int], current: int, forward: bool) -> int | None:
    """Index into sorted `positions` of the first one after `current` (or before it), wrapping; None if empty."""
    if not positions:
        return None
    if forward:
        k = bisect.bisect_right(positions, current)
        return k if k < len(positions) else 0
    k = bisect.bisect_left(positions, current) - 1
    return k if k >= 0 else len(positions) - 1


def clean_line(raw: bytes) -> str:
    """One log line for display: UTF-8 (bad bytes replaced), no ANSI codes or control characters,
    a carriage-return progress line reduced to its last state, cut at MAX_LINE_CHARS."""
    text = raw.decode("utf-8", errors="replace").rstrip("\r")
    if "\r" in text:
        text = text.rsplit("\r", 1)[1]
    text = _CONTROL.sub("", _ANSI_ESCAPE.sub("", text))
    if len(text) > MAX_LINE_CHARS:
        text = f"{text[:MAX_LINE_CHARS]} … ({len(text) - MAX_LINE_CHARS:,} more characters)"
    return text


@dataclass
class LogRead:
    """What one poll found: new complete lines, notes about the file (replaced, truncated), or why it waits."""

    path: Path | None
    lines: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    dropped: int = 0  # lines read in this poll but not kept: more than max_lines arrived at once
    waiting: str | None = None  # set while there is no file to follow
    bytes_read: int = 0  # bytes read since the follower was made, all files together


class LogFollower:
    """Follows one text file at a time like `tail -F`; every poll reads a bounded amount. No UI in here."""

    def __init__(
        self,
        tail_lines: int = 2000,
        read_bytes: int = 256 << 10,
        tail_bytes: int = 2 << 20,
        backlog_bytes: int = 8 << 20,
        max_lines: int = 5000,
        partial_polls: int = 5,
    ) -> None:
        self.tail_lines = tail_lines  # lines shown from a file met for the first time
        self.read_bytes = read_bytes  # most new bytes read per poll
        self.tail_bytes = tail_bytes  # most bytes read from the end to find tail_lines lines
        self.backlog_bytes = backlog_bytes  # further behind than this: skip to the tail
        self.max_lines = max_lines  # most lines one poll returns
        self.partial_polls = partial_polls  # polls an unterminated last line waits before it is shown
        self.path: Path | None = None
        self.bytes_read = 0
        self._forget()

    def _forget(self) -> None:
        self._ident: tuple[int, int] | None = None
        self._offset = 0
        self._partial = b""
        self._idle = 0
        self._head = b""

    def poll(self, path: Path | None) -> LogRead:
        """Lines appended to `path` since the last poll; of a new path, file or truncated file: its tail."""
        notes: list[str] = []
        if path != self.path:
            if self.path is not None:
                notes.append(f"now following {path}" if path else f"stopped following {self.path}")
            self.path = path
            self._forget()
        if path is None:
            return LogRead(None, notes=notes, waiting="no file to follow yet", bytes_read=self.bytes_read)
        try:
            fh = open(path, "rb")  # noqa: SIM115 - closed below; opened each poll so a replaced file is seen
        except FileNotFoundError:
            if self._ident is not None:
                notes.append(f"{path.name} was removed; waiting for it to come back")
                self._forget()
            return LogRead(path, notes=notes, waiting=f"waiting for {path} to appear", bytes_read=self.bytes_read)
        except OSError as exc:
            waiting = f"cannot read {path}: {exc.strerror or exc}"
            return LogRead(path, notes=notes, waiting=waiting, bytes_read=self.bytes_read)
        with fh:
            raw = self._read(fh, path.name, notes)
        dropped = max(0, len(raw) - self.max_lines)
        lines = [clean_line(line) for line in raw[dropped:]]
        return LogRead(path, lines, notes, dropped, bytes_read=self.bytes_read)

    def _read(self, fh, name: str, notes: list[str]) -> list[bytes]:
        st = os.fstat(fh.fileno())
        ident, size = (st.st_dev, st.st_ino), st.st_size
        if self._ident is None:
            return self._read_tail(fh, ident, size, notes, name)
        if ident != self._ident:
            notes.append(f"{name} was replaced; following the new file")
            return self._read_tail(fh, ident, size, notes, name)
        if size < self._offset or not self._same_head(fh):
            notes.append(f"{name} was truncated; following it from its start")
            return self._read_tail(fh, ident, size, notes, name)
        if size - self._offset > self.backlog_bytes:
            notes.append(f"skipped {(size - self._offset) / 2**20:.1f} MiB of {name} to catch up")
            return self._read_tail(fh, ident, size, notes, name)
        fh.seek(self._offset)
        data = fh.read(self.read_bytes)
        self._offset += len(data)
        self.bytes_read += len(data)
        return self._split(data)

    def _same_head(self, fh) -> bool:
        head = os.pread(fh.fileno(), HEAD_BYTES, 0)
        if head[: len(self._head)] != self._head:
            return False
        self._head = head
        return True

    def _read_tail(self, fh, ident: tuple[int, int], size: int, notes: list[str], name: str) -> list[bytes]:
        """The last tail_lines complete lines before `size`, reading backwards at most tail_bytes."""
        chunks: list[bytes] = []
        start, newlines = size, 0
        while start > 0 and newlines <= self.tail_lines and size - start < self.tail_bytes:
            step = min(64 << 10, start, self.tail_bytes - (size - start))
            start -= step
            fh.seek(start)
            chunk = fh.read(step)
            chunks.append(chunk)
            newlines += chunk.count(b"\n")
        data = b"".join(reversed(chunks))
        self.bytes_read += len(data)
        self._forget()
        self._ident, self._offset = ident, start + len(data)
        self._head = os.pread(fh.fileno(), HEAD_BYTES, 0)
        lines = data.split(b"\n")
        self._partial = lines.pop()[-MAX_LINE_BYTES:]
        if start > 0 and lines:
            lines.pop(0)  # begins mid-line
        if len(lines) > self.tail_lines or start > 0:
            lines = lines[-self.tail_lines :]
            notes.append(f"showing the last {len(lines):,} lines of {name}; earlier ones are not shown")
        return lines

    def _split(self, data: bytes) -> list[bytes]:
        if not data:
            if self._partial:
                self._idle += 1
                if self._idle >= self.partial_polls:  # a last line nobody finishes is shown anyway
                    line, self._partial, self._idle = self._partial, b"", 0
                    return [line]
            return []
        self._idle = 0
        lines = (self._partial + data).split(b"\n")
        self._partial = lines.pop()
        if len(self._partial) > MAX_LINE_BYTES:
            lines.append(self._partial)
            self._partial = b""
        return lines


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
    BINDINGS = [
        Binding("space", "toggle_pause", "Pause/follow"),
        Binding("slash", "search", "Search"),
        Binding("n", "match(True)", "Next match"),
        Binding("N", "match(False)", "Prev match", show=False),
        Binding("e", "error(True)", "Next error"),
        Binding("E", "error(False)", "Prev error", show=False),
        Binding("G", "follow_bottom", "Bottom"),
        Binding("end", "follow_bottom", "Bottom", show=False, priority=True),  # before the log's own `end`
        Binding("escape", "close", "Close"),
        Binding("l", "close", "Close", show=False),
    ]

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
        yield Footer()

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
