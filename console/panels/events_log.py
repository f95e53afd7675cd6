"""EventsLog: the run's event lines (the last EVENT_LINES) and a filter box that narrows them as you type."""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable

from textual import events, on
from textual.app import ComposeResult
from textual.containers import Vertical
from textual.widgets import Input, RichLog

EVENT_LINES = 2000  # event lines kept (and shown unfiltered)


class EventsLog(Vertical):
    """The filter box (#events-filter, hidden until opened) above the event log (#events); esc clears."""

    DEFAULT_CSS = "EventsLog { height: auto; }"

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self._lines: deque[str] = deque(maxlen=EVENT_LINES)  # every event line, for the filter
        self._filter = ""

    @property
    def lines(self) -> list[str]:
        """The event lines kept, oldest first, filtered or not."""
        return list(self._lines)

    def compose(self) -> ComposeResult:
        """The filter box (hidden) above the log."""
        yield Input(placeholder="filter events (ignores case); esc clears", id="events-filter")
        yield RichLog(id="events", wrap=False, markup=False, max_lines=EVENT_LINES)

    def on_mount(self) -> None:
        """Name the log."""
        self.query_one("#events", RichLog).border_title = "events"

    def add_lines(self, lines: Iterable[str]) -> None:
        """Keep `lines` for filtering and show those that pass the current filter."""
        log = self.query_one("#events", RichLog)
        for line in lines:
            self._lines.append(line)
            if not self._filter or self._filter in line.lower():
                log.write(line)

    def open_filter(self) -> None:
        """Show the filter box and focus it."""
        box = self.query_one("#events-filter", Input)
        box.display = True
        box.focus()

    @on(Input.Changed, "#events-filter")
    def _filter_changed(self, event: Input.Changed) -> None:
        self._filter = event.value.strip().lower()
        log = self.query_one("#events", RichLog)
        log.clear()
        shown = [line for line in self._lines if not self._filter or self._filter in line.lower()]
        for line in shown:
            log.write(line)
        log.border_title = f"events matching “{event.value.strip()}”: {len(shown)}" if self._filter else "events"

    def on_key(self, event: events.Key) -> None:
        """esc in the filter box clears it and hides the box."""
        box = self.query_one("#events-filter", Input)
        if event.key == "escape" and box.has_focus:
            event.stop()
            box.value = ""
            box.display = False
            self.app.set_focus(None)
