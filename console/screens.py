"""Modal screens: the abort confirmation and the key help."""

from __future__ import annotations

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.screen import ModalScreen
from textual.widgets import Button, Static

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


class ConfirmAbort(ModalScreen[bool]):
    """Asks before aborting; y confirms, n or esc cancels."""

    BINDINGS = [
        Binding("y", "answer(True)", "Abort", priority=True),
        Binding("n", "answer(False)", "Keep running", priority=True),
        Binding("escape", "answer(False)", "Keep running", priority=True),
    ]
    DEFAULT_CSS = """
    ConfirmAbort { align: center middle; }
    ConfirmAbort > Vertical { width: 72; height: auto; border: thick $error; background: $surface; padding: 1 2; }
    ConfirmAbort Horizontal { height: auto; align-horizontal: right; margin-top: 1; }
    ConfirmAbort Button { margin-left: 2; }
    """

    def __init__(self, what: str) -> None:
        super().__init__()
        self.what = what

    def compose(self) -> ComposeResult:
        with Vertical():
            yield Static(
                f"[b]Abort {self.what}?[/b]\n\nDispatch stops, requests in flight are cancelled after a short "
                "grace period, and the serve target is stopped. Finished steps keep their results; "
                "`gb10-console run --resume` continues with the rest.",
                id="abort-text",
            )
            with Horizontal():
                yield Button("Keep running \\[n]", id="no")
                yield Button("Abort \\[y]", id="yes", variant="error")

    def on_button_pressed(self, event: Button.Pressed) -> None:
        """A click answers like the key."""
        self.dismiss(event.button.id == "yes")

    def action_answer(self, answer: bool) -> None:
        """Close with `answer`."""
        self.dismiss(answer)


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
