"""The key help (`?`): every key the console answers to, written from the key table (console/keys.py)."""

from __future__ import annotations

import textwrap
from functools import cache

from rich.markup import escape
from textual.app import ComposeResult
from textual.screen import ModalScreen
from textual.widgets import Static

from console.keys import CONTROL_ACTIONS, MAIN, SCREEN_OF_ACTION, Key, screen_groups, screen_keys

HELP_WIDTH = 74  # columns inside the help box (80 less its border and padding): lines never wrap
KEY_COLUMN = 10  # two spaces, the key, padding
NO_BREAK = "\u00a0"  # a space the wrapping keeps: `n/N match` stays on one line
FOOTER_HELP = """
Resume an aborted run:  gb10-console run --resume RUN_DIR
Reattach to a run:      gb10-console attach RUN_DIR"""


def key_help(key: Key) -> str:
    """One key's lines: the key in bold, then what it does (and the keys of the screen it opens), wrapped."""
    text = key.help + (f". {key.detail}" if key.detail else "")
    screen = SCREEN_OF_ACTION.get(key.action)
    if screen:
        text += f" ({', '.join(group.replace(' ', NO_BREAK) for group in screen_groups(screen))})"
    lines = textwrap.wrap(text, HELP_WIDTH - KEY_COLUMN)
    pad = " " * (KEY_COLUMN - 2 - len(key.label))
    head = f"  [b]{escape(key.label)}[/b]{pad}{escape(lines[0])}"
    return "\n".join([head, *(" " * KEY_COLUMN + escape(line) for line in lines[1:])])


@cache
def keys_help(readonly: bool) -> str:
    """The help text: every key this console answers to (no control keys when read-only); made once."""
    keys = screen_keys(MAIN)
    controls = [k for k in keys if k.action in CONTROL_ACTIONS]
    views = [k for k in keys if k.action not in CONTROL_ACTIONS]
    if readonly:
        names = [k.action for k in controls]
        head = [f"[b]Read-only console[/b]: {', '.join(names[:-1])} and {names[-1]} are off (--readonly).\n"]
    else:
        head = [key_help(k) for k in controls]
    return "\n".join([*head, *(key_help(k) for k in views)]) + "\n" + FOOTER_HELP


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
        box = Static(keys_help(self.readonly))
        box.border_title = "Keys"
        box.border_subtitle = "esc or any key closes this"
        yield box

    def on_key(self, event) -> None:
        """Any key closes the help."""
        event.stop()
        self.dismiss(None)
