"""The key help (`?`): every key the console answers to."""

from __future__ import annotations

from textual.app import ComposeResult
from textual.screen import ModalScreen
from textual.widgets import Static

HELP_WIDTH = 74  # columns inside the help box (80 less its border and padding): lines never wrap
CONTROL_KEYS_HELP = """\
  [b]a[/b]       abort the soak (asks first): stop dispatch, cancel the
          requests in flight, stop the serve target; it stays resumable
  [b]r[/b]       resume an aborted or failed run: a new runner continues
          every step that is not DONE
  [b]p[/b]       pause dispatch (requests in flight finish, none start);
          p again continues. The idle part of a pause is left out of
          the step's wall time; a pause with requests in flight can
          cost the arm its verdict (summary.md says why)
"""
VIEW_KEYS_HELP = """\
  [b]l[/b]       the serve target's log, followed: / search, n/N match,
          e/E error, space pause, G bottom, esc back
  [b]g[/b]       gates of the latest summary with their criteria; region timings
  [b]f[/b]       filter the events as you type (any case); esc clears
  [b]t[/b]       timeline: MemAvailable, step spans and verdicts in time
  [b]ctrl+p[/b]  command palette: every action by name
  [b]q[/b]       quit the console; the soak keeps running
  [b]?[/b]       this help
"""
READONLY_NOTE = "[b]Read-only console[/b]: abort, resume and pause are off (--readonly).\n"
FOOTER_HELP = """
Resume an aborted run:  gb10-console run --resume RUN_DIR
Reattach to a run:      gb10-console attach RUN_DIR
[dim]esc or any key closes this[/dim]"""


def keys_help(readonly: bool) -> str:
    """The help text: every key this console answers to (no control keys when read-only)."""
    head = "[b]Keys[/b]\n\n" + (READONLY_NOTE + "\n" if readonly else CONTROL_KEYS_HELP)
    return head + VIEW_KEYS_HELP + FOOTER_HELP


class HelpScreen(ModalScreen[None]):
    """Lists every key."""

    DEFAULT_CSS = """
    HelpScreen { align: center middle; }
    HelpScreen > Static {
        width: 80; max-width: 100%; height: auto; max-height: 100%;
        border: thick $primary; background: $surface; padding: 0 2;
    }
    """

    def __init__(self, readonly: bool = False) -> None:
        super().__init__()
        self.readonly = readonly

    def compose(self) -> ComposeResult:
        yield Static(keys_help(self.readonly))

    def on_key(self, event) -> None:
        """Any key closes the help."""
        event.stop()
        self.dismiss(None)
