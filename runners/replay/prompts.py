"""Conversation sources for replay phases: built-in prompts, or the turns of a ShareGPT file.

A conversation is one or more user turns, each with the reply the dataset recorded (if any).
Single-turn replay sends the first turn; multi-turn replay sends the turns in order, carrying
either the recorded replies or the model's own answers forward as history.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import orjson


class DatasetError(ValueError):
    """A dataset that cannot be used; the message names the file and the entry."""


@dataclass(frozen=True)
class Turn:
    """A user message and the assistant reply the dataset recorded for it (None when it has none)."""

    user: str
    reply: str | None = None


@dataclass(frozen=True)
class Conversation:
    """Turns replayed in order; `source` names where they came from (`builtin:3`, `sharegpt:<id>`)."""

    source: str
    turns: tuple[Turn, ...]
    max_tokens: int | None = None

    @property
    def chars(self) -> int:
        """Characters of every user turn and recorded reply: the longest context it can build."""
        return sum(len(t.user) + len(t.reply or "") for t in self.turns)


BUILTIN_PROMPTS = (
    "Explain what a KV cache is in a transformer decoder and why it grows with sequence length.",
    "Write a haiku about a GPU running out of memory at three in the morning.",
    "List five things to check before leaving a seven-hour benchmark running overnight.",
    "What is the difference between time to first token and time per output token?",
    "Summarise the idea of split-K matrix multiplication in two sentences.",
    "A server answers GET /health but every POST hangs. What could be wrong, and how would you tell?",
    "Translate to French: the soak test finished and every arm passed its gates.",
    "Give a short recipe for pancakes.",
    "Why does unified CPU/GPU memory make out-of-memory situations harder to contain?",
    "Describe continuous batching in an LLM inference server to a new engineer.",
    "Write a Python function that returns the 95th percentile of a list of floats.",
    "What are the trade-offs of FP4 weights for decode-heavy workloads?",
    "Tell me a two-paragraph story about a lighthouse keeper who collects radio signals.",
    "How would you decide whether a kernel change is faster or just noise?",
    "Draft a polite message asking a colleague to review a pull request today.",
    "What does PR_SET_PDEATHSIG do on Linux, and when is it not enough?",
    "Plan a three-day hiking trip with a packing list.",
    "Explain flash-decoding: how are partial attention outputs combined across splits?",
    "Compare Poisson arrivals with fixed concurrency for benchmarking an inference server.",
    "Write a limerick about a profiler that would not stop.",
    "Why should benchmark clients record the scheduled send time as well as the actual one?",
    "Give three reasons a container might be OOM-killed even though the host has free memory.",
    "What questions would you ask before changing a default kernel in production?",
    "Describe the smell of rain to someone who has never experienced it.",
)


BUILTIN_FOLLOW_UPS = (
    "Now make that shorter: one sentence.",
    "Give one concrete example.",
    "What is the most common mistake people make here?",
)
BUILTIN_REPLY = "Here is a brief answer, with the main points first and the details after."


def builtin_conversations(max_turns: int = 1) -> list[Conversation]:
    """The built-in prompts, each a conversation of up to `max_turns` turns (fixed follow-ups after the first)."""
    out = []
    for i, text in enumerate(BUILTIN_PROMPTS):
        users = [text, *BUILTIN_FOLLOW_UPS][:max_turns]
        out.append(Conversation(f"builtin:{i}", tuple(Turn(u, BUILTIN_REPLY) for u in users)))
    return out


def load_sharegpt(path: Path, max_turns: int = 1) -> list[Conversation]:
    """Conversations of a ShareGPT-format JSON file, up to `max_turns` user turns each.

    The file is a list of `{"id": ..., "conversations": [{"from": "human"|"gpt", "value": ...}, ...]}`.
    A turn is a human message and the gpt reply after it; leading non-human messages are skipped,
    as are entries without a human turn. Raises DatasetError naming the file and entry.

    The last file read is kept, by path, size and mtime: ShareGPT's own file is 642 MiB of JSON, and parsing
    it at every step would take seconds and a few GiB of this (unified) memory each time.
    """
    try:
        stat = path.stat()
    except FileNotFoundError:
        raise DatasetError(f"{path}: no such dataset file") from None
    except OSError as exc:
        raise DatasetError(f"{path}: not a readable JSON file: {exc}") from None
    key = (str(path), stat.st_size, stat.st_mtime_ns, max_turns)
    if key not in _LAST_READ:
        _LAST_READ.clear()
        _LAST_READ[key] = _read_sharegpt(path, max_turns)
    return list(_LAST_READ[key])


_LAST_READ: dict[tuple, tuple[Conversation, ...]] = {}


def _read_sharegpt(path: Path, max_turns: int) -> tuple[Conversation, ...]:
    """Parse a ShareGPT file (see load_sharegpt): a JSON list of conversations, or JSONL, one per line."""
    try:
        raw = path.read_bytes()
    except IsADirectoryError:
        raise DatasetError(f"{path}: is a directory; name the dataset file in it") from None
    except OSError as exc:
        raise DatasetError(f"{path}: cannot be read: {exc.strerror or exc}") from None
    entries, where = _sharegpt_entries(path, raw)
    out = []
    for i, entry in enumerate(entries):
        messages = entry.get("conversations") if isinstance(entry, dict) else None
        if not isinstance(messages, list):
            raise DatasetError(f"{path}: {where(i)} has no 'conversations' list (ShareGPT format)")
        turns = _turns(messages)[:max_turns]
        if turns:
            out.append(Conversation(f"sharegpt:{entry.get('id', i)}", tuple(turns)))
    if not out:
        raise DatasetError(f"{path}: no conversation has a human turn")
    return tuple(out)


def _sharegpt_entries(path: Path, raw: bytes) -> tuple[list, Callable[[int], str]]:
    """The file's entries and how to name entry i: a JSON list (`entry i`), else JSONL (`line n`), else an error
    that says which format was expected."""
    if not raw.strip():
        raise DatasetError(f"{path}: the file is empty (a ShareGPT dataset is a JSON list of conversations)")
    try:
        data = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        lines = [(n, line) for n, line in enumerate(raw.splitlines(), 1) if line.strip()]
        try:
            entries = [orjson.loads(line) for _, line in lines]
        except orjson.JSONDecodeError:
            raise DatasetError(
                f"{path}: neither JSON nor JSONL ({exc}); a ShareGPT dataset is a JSON list of conversations, or "
                "JSONL with one conversation object per line"
            ) from None
        if len(entries) < 2 or not all(isinstance(e, dict) for e in entries):
            raise DatasetError(f"{path}: not a readable JSON file: {exc}") from None
        return entries, lambda i: f"line {lines[i][0]}"
    if not isinstance(data, list):
        raise DatasetError(f"{path}: expected a JSON list of conversations (ShareGPT format)")
    return data, lambda i: f"entry {i}"


def _turns(messages: list) -> list[Turn]:
    turns: list[Turn] = []
    for msg in messages:
        if not isinstance(msg, dict) or not isinstance(msg.get("value"), str):
            continue
        role, text = msg.get("from"), msg["value"]
        if role in ("human", "user"):
            if not text.strip():
                break
            turns.append(Turn(text))
        elif role in ("gpt", "assistant", "chatgpt") and turns and turns[-1].reply is None:
            turns[-1] = Turn(turns[-1].user, text)
    return turns


def within_chars(pool: list[Conversation], max_prompt_chars: int, origin: str) -> list[Conversation]:
    """The conversations of `pool` of at most `max_prompt_chars` (Conversation.chars), in order.

    This filter runs before counting, so a pathological prompt never takes a budgeted slot. Raises
    DatasetError naming `origin` when none is short enough.
    """
    eligible = [c for c in pool if c.chars <= max_prompt_chars]
    if not eligible:
        raise DatasetError(f"{origin}: no prompt is at most {max_prompt_chars} characters (raise max_prompt_chars)")
    return eligible


def cycle(eligible: list[Conversation], count: int) -> list[Conversation]:
    """`count` conversations taken from `eligible` in order, starting over when it runs out."""
    return [eligible[i % len(eligible)] for i in range(count)]
