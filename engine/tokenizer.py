"""Byte-level tokenizer: token ids 0-255 are bytes, then BOS and EOS."""

from __future__ import annotations

import codecs
from dataclasses import dataclass

BOS = 256
EOS = 257
VOCAB_SIZE = 258


def encode(text: str, add_bos: bool = True) -> list[int]:
    """UTF-8 bytes of `text` as token ids, with BOS first unless `add_bos` is false."""
    ids = list(text.encode("utf-8"))
    return [BOS, *ids] if add_bos else ids


def decode(ids: list[int]) -> str:
    """Text of a token list; special tokens decode to nothing, invalid UTF-8 to U+FFFD."""
    return bytes(i for i in ids if i < 256).decode("utf-8", errors="replace")


@dataclass
class StreamDecoder:
    """Incremental detokenizer: a multi-byte character appears once all its bytes have arrived."""

    def __post_init__(self) -> None:
        self._decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")

    def push(self, token_id: int) -> str:
        """Text completed by this token (often one character, sometimes empty)."""
        if token_id >= 256:
            return ""
        return self._decoder.decode(bytes((token_id,)))

    def flush(self) -> str:
        """Text left over from an unfinished multi-byte sequence (as U+FFFD)."""
        return self._decoder.decode(b"", final=True)


def apply_chat_template(messages: list[tuple[str, str]]) -> str:
    """Render (role, content) pairs as the tiny model's chat prompt, ending with the assistant's turn."""
    body = "".join(f"<|{role}|>\n{content}\n" for role, content in messages)
    return f"{body}<|assistant|>\n"
