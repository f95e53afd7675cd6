"""RequestRecords as tests build them by hand, and the unit they count time in."""

from __future__ import annotations

from runners.replay.records import RequestRecord

NS_PER_MS = 1_000_000


def request_record(**fields) -> RequestRecord:
    """A record of request 0 (chat, prompt "t" of 1 character, 4 max tokens, scheduled at 0) with `fields` over
    those."""
    base = dict(index=0, endpoint="chat", prompt_source="t", prompt_chars=1, max_tokens=4, scheduled_ns=0)
    return RequestRecord(**{**base, **fields})
