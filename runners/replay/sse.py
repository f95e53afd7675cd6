"""Incremental `text/event-stream` decoding (WHATWG server-sent events), bytes in, event data out."""

from __future__ import annotations

import codecs
import re

_LINE_BREAK = re.compile(r"\r\n|\r|\n")


class SSEDecoder:
    """Feed arbitrary byte chunks; get the `data` of every completed event.

    Lines end in CRLF, CR or LF (a CR at the end of one chunk and an LF at the start of the next are
    one break); `:` lines are comments; multiple `data:` lines join with newlines; a blank line ends
    the event. Fields other than `data` are ignored.
    """

    def __init__(self) -> None:
        self._utf8 = codecs.getincrementaldecoder("utf-8")(errors="replace")
        self._tail = ""
        self._data: list[str] = []
        self._skip_lf = False

    def feed(self, chunk: bytes) -> list[str]:
        """Consume `chunk`; return the data of events it completed, in order."""
        text = self._utf8.decode(chunk)
        if self._skip_lf and text:
            if text[0] == "\n":
                text = text[1:]
            self._skip_lf = False
        if not text:
            return []
        text = self._tail + text
        lines = _LINE_BREAK.split(text)
        self._tail = lines.pop()
        if text.endswith("\r"):
            self._skip_lf = True
        events: list[str] = []
        for line in lines:
            self._line(line, events)
        return events

    @property
    def pending(self) -> bool:
        """True when part of an event has arrived but not its end."""
        return bool(self._tail or self._data)

    def _line(self, line: str, events: list[str]) -> None:
        if not line:
            if self._data:
                events.append("\n".join(self._data))
                self._data = []
            return
        if line[0] == ":":
            return
        name, _, value = line.partition(":")
        if name == "data":
            self._data.append(value[1:] if value[:1] == " " else value)
