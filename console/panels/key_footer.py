"""KeyFooter: Textual's footer of key bindings, recomposed only when the keys it shows changed.

Textual's Footer recomposes (a new widget per key, each restyled) on every change of focus or screen, even
when it would show the same keys: twice for each `g` and `esc` in the console bench, most of the style work of
a screen switch. This one remembers the keys it last composed and skips a recompose that would change nothing.
"""

from __future__ import annotations

from textual.app import ComposeResult
from textual.screen import Screen
from textual.widgets import Footer


class KeyFooter(Footer):
    """The footer; a bindings change that leaves its keys as they are redraws nothing."""

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self._composed: tuple | None = None  # the keys of the last compose, None before the first

    def _keys(self, screen: Screen) -> tuple:
        """What the footer shows of `screen`'s bindings: each shown key, its label, action, whether it is enabled."""
        palette = self.app.COMMAND_PALETTE_BINDING
        return tuple(
            (key, binding.description, binding.action, enabled, tooltip)
            for key, (_node, binding, enabled, tooltip) in screen.active_bindings.items()
            if binding.show or key == palette
        )

    def compose(self) -> ComposeResult:
        """Textual's footer keys, noting which."""
        self._composed = self._keys(self.screen) if self._bindings_ready else None
        yield from super().compose()

    def bindings_changed(self, screen: Screen) -> None:
        """Recompose only when the keys shown would change."""
        if self._composed is not None and screen is self.screen and self._keys(screen) == self._composed:
            return
        super().bindings_changed(screen)
