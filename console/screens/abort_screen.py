"""The abort confirmation: y aborts the soak (it stays resumable), n or esc keeps it running."""

from __future__ import annotations

from textual.app import ComposeResult
from textual.containers import Horizontal, Vertical
from textual.screen import ModalScreen
from textual.widgets import Button, Static

from console.keys import ABORT, bindings


class ConfirmAbort(ModalScreen[bool]):
    """Asks before aborting; y confirms, n or esc cancels."""

    BINDINGS = bindings(ABORT)  # console/keys.py
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
