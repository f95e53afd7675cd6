"""Every key of the console, in one table: a key is described once, here.

The main screen's BINDINGS, its command palette entries (`RunConsole.get_system_commands`) and the help
screen's text (console/screens/help_screen.py) are made from the MAIN rows; the logs, gates, timeline and
abort-confirmation screens take their BINDINGS from their own rows, so the help lists them from here too.
A control key (abort, resume, pause) is shown and run only when it makes sense now (`Shown`), and never
under `--readonly`; tests/console/test_keys.py holds the bindings, the palette and the help to this table.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

from textual.binding import Binding

MAIN, LOGS, GATES, TIMELINE, ABORT = "main", "logs", "gates", "timeline", "abort"  # the screens with keys
LABELS = {"question_mark": "?", "slash": "/", "escape": "esc"}  # how the help writes Textual's key names


class Shown(Enum):
    """When a key is shown (footer, palette, help) and run."""

    ALWAYS = "always"
    WHILE_RUNNER = "while a runner works on the run; never under --readonly"
    WHILE_NO_RUNNER = "while no runner works on the run and it did not finish; never under --readonly"


@dataclass(frozen=True)
class Key:
    """One key of one screen: what it runs and how it is described."""

    key: str  # Textual's key name
    action: str  # the action it runs, on its screen (or `app.` ...)
    title: str  # its label in the footer
    help: str  # what it does, in the help and the command palette
    screen: str = MAIN
    shown: Shown = Shown.ALWAYS
    footer: bool = True  # False: it works, the footer leaves it out (a second key for the same thing)
    palette: str = ""  # the main screen's command palette names it so ("": not in the palette)
    detail: str = ""  # more for the help screen only
    priority: bool = False  # before the focused widget's own binding of the key

    @property
    def label(self) -> str:
        """The key as the help writes it (`?`, `/`, `esc`, `ctrl+p`, `G`)."""
        return LABELS.get(self.key, self.key)

    @property
    def palette_help(self) -> str:
        """The command palette's line under its name: what it does, and the key."""
        return f"{self.help[:1].upper()}{self.help[1:]} ({self.label})"

    def binding(self) -> Binding:
        """The Textual binding of this key."""
        return Binding(self.key, self.action, self.title, show=self.footer, priority=self.priority)


KEYS: tuple[Key, ...] = (
    Key("a", "abort", "Abort", "abort the soak (asks first): stop dispatch, cancel the requests in flight, stop "
        "the serve target; it stays resumable", shown=Shown.WHILE_RUNNER, palette="Abort the soak"),
    Key("r", "resume", "Resume", "resume an aborted or failed run: a new runner continues every step that is not "
        "DONE", shown=Shown.WHILE_NO_RUNNER, palette="Resume the run"),
    Key("p", "pause", "Pause/continue", "pause dispatch (requests in flight finish, none start); p again continues",
        shown=Shown.WHILE_RUNNER, palette="Pause or continue dispatch",
        detail="The idle part of a pause is left out of the step's wall time; a pause with requests in flight can "
        "cost the arm its verdict (summary.md says why)"),
    Key("q", "quit", "Quit (soak keeps running)", "quit the console; the soak keeps running"),
    Key("question_mark", "help", "Help", "help: every key of the console", palette="Help"),
    Key("g", "gates", "Gates", "gates of the latest summary with their criteria; region timings", palette="Gates"),
    Key("l", "logs", "Logs", "the serve target's log, followed", palette="Serve log"),
    Key("f", "filter_events", "Filter events", "filter the events as you type (any case); esc clears",
        palette="Filter events"),
    Key("t", "timeline", "Timeline", "timeline: MemAvailable, step spans and verdicts in time", palette="Timeline"),
    Key("ctrl+p", "command_palette", "palette", "command palette: every action by name", footer=False,
        priority=True),  # the footer shows it at its right end, as Textual does
    Key("space", "toggle_pause", "Pause/follow", "pause", LOGS),
    Key("slash", "search", "Search", "search", LOGS),
    Key("n", "match(True)", "Next match", "match", LOGS),
    Key("N", "match(False)", "Prev match", "match", LOGS, footer=False),
    Key("e", "error(True)", "Next error", "error", LOGS),
    Key("E", "error(False)", "Prev error", "error", LOGS, footer=False),
    Key("G", "follow_bottom", "Bottom", "bottom", LOGS),
    Key("end", "follow_bottom", "Bottom", "bottom", LOGS, footer=False, priority=True),  # before the log's `end`
    Key("escape", "close", "Close", "back", LOGS),
    Key("l", "close", "Close", "back", LOGS, footer=False),
    Key("escape", "app.pop_screen", "Back", "back", GATES),
    Key("g", "app.pop_screen", "Back", "back", GATES),
    Key("escape", "app.pop_screen", "Back", "back", TIMELINE),
    Key("t", "app.pop_screen", "Back", "back", TIMELINE),
    Key("y", "answer(True)", "Abort", "abort", ABORT, priority=True),
    Key("n", "answer(False)", "Keep running", "keep running", ABORT, priority=True),
    Key("escape", "answer(False)", "Keep running", "keep running", ABORT, priority=True),
)  # fmt: skip
SCREEN_OF_ACTION = {"logs": LOGS, "gates": GATES, "timeline": TIMELINE, "abort": ABORT}  # a main key's screen
CONTROL_ACTIONS = frozenset(k.action for k in KEYS if k.screen == MAIN and k.shown is not Shown.ALWAYS)


def screen_keys(screen: str) -> list[Key]:
    """The rows of `screen`, in the table's order."""
    return [k for k in KEYS if k.screen == screen]


def bindings(screen: str) -> list[Binding]:
    """`screen`'s Textual bindings, made from its rows."""
    return [k.binding() for k in screen_keys(screen)]


def actions_shown(shown: Shown) -> frozenset[str]:
    """The main screen's actions that are shown `shown`."""
    return frozenset(k.action for k in screen_keys(MAIN) if k.shown is shown)


def screen_groups(screen: str) -> list[str]:
    """`screen`'s keys for the help, keys that do the same thing together: `n/N match`, `esc/l back`."""
    together: dict[str, list[str]] = {}
    for key in screen_keys(screen):
        together.setdefault(key.help, []).append(key.label)
    return [f"{'/'.join(labels)} {what}" for what, labels in together.items()]
