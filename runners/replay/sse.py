"""Incremental `text/event-stream` decoding (WHATWG server-sent events), bytes in, event data out."""

from __future__ import annotations


class SSEDecoder:
    """Feed arbitrary byte chunks; get the `data` of every completed event.

    Lines end in CRLF, CR or LF (a CR at the end of one chunk and an LF at the start of the next are
    one break); `:` lines are comments; multiple `data:` lines join with newlines; a blank line ends
    the event. Fields other than `data` are ignored. Lines are split on bytes (a line break byte
    never occurs inside a UTF-8 sequence), so only the data itself is decoded, with U+FFFD for
    invalid UTF-8.
    """

    __slots__ = ("_data", "_skip_lf", "_tail")

    def __init__(self) -> None:
        self._tail = b""
        self._data: list[bytes] = []
        self._skip_lf = False

    def feed(self, chunk: bytes) -> list[str]:
        """Consume `chunk`; return the data of events it completed, in order."""
        if self._skip_lf and chunk:
            if chunk[:1] == b"\n":
                chunk = chunk[1:]
            self._skip_lf = False
        if not chunk:
            return []
        buf = self._tail + chunk if self._tail else chunk
        if b"\r" in buf:
            self._skip_lf = buf[-1:] == b"\r"
            buf = buf.replace(b"\r\n", b"\n").replace(b"\r", b"\n")
        lines = buf.split(b"\n")
        self._tail = lines.pop()
        events: list[str] = []
        data = self._data
        for line in lines:
            if not line:
                if data:
                    events.append(b"\n".join(data).decode("utf-8", "replace"))
                    data.clear()
            elif line[:5] == b"data:":
                data.append(line[6:] if line[5:6] == b" " else line[5:])
            elif line == b"data":
                data.append(b"")
        return events

    @property
    def pending(self) -> bool:
        """True when part of an event has arrived but not its end."""
        return bool(self._tail or self._data)
