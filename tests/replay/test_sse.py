"""The SSE decoder: any chunking, any line ending, comments, multi-line data."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from runners.replay.sse import SSEDecoder


def decode_all(stream: bytes, cuts: list[int]) -> list[str]:
    dec = SSEDecoder()
    out: list[str] = []
    prev = 0
    for cut in [*sorted(set(cuts)), len(stream)]:
        out += dec.feed(stream[prev:cut])
        prev = cut
    return out


payload = st.text(alphabet=st.characters(blacklist_characters="\r\n", blacklist_categories=("Cs",)), max_size=40)


@settings(max_examples=300, deadline=None)
@given(
    events=st.lists(st.lists(payload, min_size=1, max_size=3), min_size=1, max_size=6),
    newline=st.sampled_from(["\n", "\r\n", "\r"]),
    comments=st.booleans(),
    data=st.data(),
)
def test_any_chunking_and_line_ending_yields_the_same_events(events, newline, comments, data) -> None:
    parts = []
    for lines in events:
        if comments:
            parts.append(f": keep-alive{newline}")
        parts += [f"data: {line}{newline}" for line in lines]
        parts.append(newline)
    stream = "".join(parts).encode("utf-8")
    cuts = data.draw(st.lists(st.integers(0, len(stream)), max_size=12))
    assert decode_all(stream, cuts) == ["\n".join(lines) for lines in events]


def test_split_crlf_counts_as_one_line_break() -> None:
    dec = SSEDecoder()
    assert dec.feed(b"data: a\r") == []
    assert dec.feed(b"\n\r") == ["a"]
    assert dec.feed(b"\ndata: b\r\n\r\n") == ["b"]


def test_field_forms_from_the_spec() -> None:
    dec = SSEDecoder()
    stream = b"event: x\nid: 3\ndata:no-space\ndata\ndata:  two\n\n: comment only\n\nretry: 5\n\n"
    assert dec.feed(stream) == ["no-space\n\n two"]


def test_multibyte_characters_split_across_chunks() -> None:
    raw = "data: 東京\n\n".encode()
    dec = SSEDecoder()
    assert [e for i in range(len(raw)) for e in dec.feed(raw[i : i + 1])] == ["東京"]


def test_pending_reports_an_unfinished_event() -> None:
    dec = SSEDecoder()
    dec.feed(b"data: partial")
    assert dec.pending
    dec.feed(b"\n\n")
    assert not dec.pending
