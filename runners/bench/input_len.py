"""Prompts of a given length in tokens for `bench client --input-len N`.

Where the server offers `POST /tokenize`, each prompt is cut from a stream of filler words to the
shortest length the server counts as at least N tokens (a binary search over characters; the count
includes the chat template on the chat endpoint), and the counts it reported are kept. Elsewhere the
prompts are N × APPROX_CHARS_PER_TOKEN characters and the result says the length is approximate.
Each prompt has its own words from the start, so no two share a prefix a server could cache.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Literal

from runners.replay.prompts import Conversation, Turn
from runners.replay.token_lengths import TokenCount, TokenizeError, tokenize_body
from runners.replay.trace import filler_words

APPROX_CHARS_PER_TOKEN = 4.0  # English text under common BPE tokenizers
DISTINCT_PROMPTS = 16
MAX_DOUBLINGS = 24


@dataclass(frozen=True)
class InputLength:
    """How the prompts were sized: `requested` tokens; `tokens_min`/`tokens_max` as the server counted them
    (`method` "tokenize"), or None with `method` "approximate"; `note` says which in words."""

    requested: int
    method: Literal["tokenize", "approximate"]
    tokens_min: int | None
    tokens_max: int | None
    note: str

    def as_dict(self) -> dict:
        """JSON form."""
        return asdict(self)


async def sized_prompts(
    count: TokenCount | str, endpoint: str, model: str, input_len: int, distinct: int
) -> tuple[list[Conversation], InputLength]:
    """`distinct` one-turn conversations of `input_len` tokens each, and how they were sized.

    `count` is the server's token counter, or why it has none (then the sizes are approximate). A
    counter that fails part-way makes them approximate too, with its error in the note.
    """
    seeds = [f"input-len:{i}" for i in range(distinct)]
    if not isinstance(count, str):
        try:
            sized = [await _fit(count, endpoint, model, input_len, seed) for seed in seeds]
        except TokenizeError as exc:
            count = str(exc)
        else:
            tokens = [t for _, t in sized]
            low, high = min(tokens), max(tokens)
            span = f"{low}" if low == high else f"{low}..{high}"
            note = f"{span} tokens as the server's /tokenize counts them" + (
                " (chat template included)" if endpoint == "chat" else ""
            )
            convs = [Conversation(f"input-len:{i}", (Turn(text),)) for i, (text, _) in enumerate(sized)]
            return convs, InputLength(input_len, "tokenize", low, high, note)
    chars = max(1, round(input_len * APPROX_CHARS_PER_TOKEN))
    note = (
        f"approximate: {chars} characters each ({APPROX_CHARS_PER_TOKEN:g} characters per token, usual for "
        f"English text under BPE tokenizers) because the server cannot count tokens: {count}"
    )
    convs = [Conversation(f"input-len:{i}", (Turn(filler_words(seed, chars)),)) for i, seed in enumerate(seeds)]
    return convs, InputLength(input_len, "approximate", None, None, note)


async def _fit(count: TokenCount, endpoint: str, model: str, target: int, seed: str) -> tuple[str, int]:
    """The shortest prefix of `seed`'s filler words the server counts as >= `target` tokens, and its count.

    If even the longest text tried stays below `target`, that text and its count are returned.
    """

    async def tokens(chars: int) -> int:
        return await count(tokenize_body(endpoint, model, Conversation(seed, (Turn(filler_words(seed, chars)),))))

    low, high = 1, max(2, target)
    high_tokens, doublings = await tokens(high), 0
    while high_tokens < target:
        if doublings == MAX_DOUBLINGS:
            return filler_words(seed, high), high_tokens
        low, high, doublings = high + 1, high * 2, doublings + 1
        high_tokens = await tokens(high)
    while low < high:  # invariant: tokens(high) >= target
        mid = (low + high) // 2
        if await tokens(mid) >= target:
            high = mid
        else:
            low = mid + 1
    return filler_words(seed, high), await tokens(high)
