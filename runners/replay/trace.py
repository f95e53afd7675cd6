"""Mooncake-style timestamped traces: loading, send offsets, and prompts that keep the trace's prefix sharing.

A trace is JSONL, one request per line:
`{"timestamp": <ms since the first request>, "input_length": <tokens>, "output_length": <tokens>,
"hash_ids": [<int>, ...]}`. Each hash id names one 512-token block of the prompt; requests whose hash_ids
start with the same ids share that prompt prefix (and so a server's prefix cache can reuse it).
"""

from __future__ import annotations

import json
import math
import random
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from runners.replay.prompts import DatasetError

BLOCK_TOKENS = 512
WORDS = (
    "river", "stone", "lamp", "orbit", "cedar", "signal", "harbor", "violet", "copper", "meadow",
    "engine", "quiet", "north", "paper", "glacier", "window", "amber", "falcon", "thread", "valley",
    "marble", "ember", "pilot", "canvas", "summit", "lantern", "willow", "circuit", "tide", "garden",
    "prism", "echo",
)  # fmt: skip
SORT_HINT = "sort the file by timestamp first (e.g. jq -s -c 'sort_by(.timestamp)[]' in.jsonl > out.jsonl)"


@dataclass(frozen=True)
class TraceEntry:
    """One request of a trace: its 1-based line in the file, arrival time, token counts and prompt blocks."""

    line: int
    timestamp_ms: float
    input_length: int
    output_length: int
    hash_ids: tuple[int, ...]


def _is_int(value: object) -> bool:
    """True for a JSON integer (bool is not one)."""
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: object) -> bool:
    """True for a JSON number, integer or not (bool is not one)."""
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _parse_entry(obj: object, where: str, line: int) -> TraceEntry:
    """One decoded JSON line as a TraceEntry; DatasetError naming `where` (file:line) and the field otherwise."""
    if not isinstance(obj, dict):
        raise DatasetError(
            f"{where}: expected a JSON object per line (mooncake trace format), got {type(obj).__name__}"
        )
    for field in ("timestamp", "input_length", "output_length", "hash_ids"):
        if field not in obj:
            raise DatasetError(
                f"{where}: missing field '{field}'; every line needs timestamp, input_length, "
                "output_length and hash_ids"
            )
    timestamp = obj["timestamp"]
    if not _is_number(timestamp) or not math.isfinite(timestamp) or timestamp < 0:
        raise DatasetError(
            f"{where}: field 'timestamp' must be a non-negative number of milliseconds, got {timestamp!r}"
        )
    for field in ("input_length", "output_length"):
        if not _is_int(obj[field]) or obj[field] < 0:
            raise DatasetError(
                f"{where}: field '{field}' must be a non-negative integer token count, got {obj[field]!r}"
            )
    hash_ids = obj["hash_ids"]
    if not isinstance(hash_ids, list):
        raise DatasetError(f"{where}: field 'hash_ids' must be a list of block ids, got {hash_ids!r}")
    for i, hash_id in enumerate(hash_ids):
        if not _is_int(hash_id) or hash_id < 0:
            raise DatasetError(f"{where}: field 'hash_ids' item {i} must be a non-negative integer, got {hash_id!r}")
    return TraceEntry(line, float(timestamp), obj["input_length"], obj["output_length"], tuple(hash_ids))


def load_trace(path: Path) -> list[TraceEntry]:
    """Every non-blank line of a mooncake-style JSONL trace, in file order.

    Raises DatasetError naming `file:line` and the field for: a missing or unreadable file, a line that is not a
    JSON object, a missing or negative field, a hash id that is not a non-negative integer, a timestamp earlier
    than the line before it (the trace is refused, not sorted), and a trace with no entries.
    """
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise DatasetError(f"{path}: no such trace file") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise DatasetError(f"{path}: not a readable UTF-8 text file: {exc}") from None
    entries: list[TraceEntry] = []
    for line, raw in enumerate(text.splitlines(), start=1):
        if not raw.strip():
            continue
        where = f"{path}:{line}"
        try:
            obj = json.loads(raw)
        except json.JSONDecodeError as exc:
            raise DatasetError(
                f"{where}: not valid JSON ({exc.msg} at column {exc.colno}); each line must be one JSON object"
            ) from None
        entry = _parse_entry(obj, where, line)
        if entries and entry.timestamp_ms < entries[-1].timestamp_ms:
            prev = entries[-1]
            raise DatasetError(
                f"{where}: timestamp {entry.timestamp_ms:g} ms is earlier than {prev.timestamp_ms:g} ms "
                f"on line {prev.line}; requests must be in arrival order: {SORT_HINT}"
            )
        entries.append(entry)
    if not entries:
        raise DatasetError(f"{path}: the trace has no entries; write one JSON object per line (mooncake format)")
    return entries


def trace_offsets(entries: Sequence[TraceEntry], time_scale: float = 1.0) -> list[float]:
    """Send offsets in seconds: (timestamp_ms_i - timestamp_ms_0) / 1000 * time_scale (2.0 = twice as slow)."""
    if not (math.isfinite(time_scale) and time_scale > 0):
        raise ValueError(f"time_scale must be a positive finite number (2.0 = twice as slow), got {time_scale}")
    if not entries:
        return []
    start = entries[0].timestamp_ms
    return [(entry.timestamp_ms - start) / 1000.0 * time_scale for entry in entries]


def filler_words(seed: str, chars: int) -> str:
    """Exactly `chars` characters of space-separated WORDS chosen by `random.Random(seed)`."""
    rng = random.Random(seed)
    pieces: list[str] = []
    size = 0
    while size < chars:
        word = rng.choice(WORDS) + " "
        pieces.append(word)
        size += len(word)
    return "".join(pieces)[:chars]


def synthesize_prompt(entry: TraceEntry, block_tokens: int = BLOCK_TOKENS, chars_per_token: float = 1.0) -> str:
    """A deterministic prompt of exactly round(input_length * chars_per_token) characters.

    The text is one block of round(block_tokens * chars_per_token) characters per hash id (words drawn from a
    fixed list by a generator seeded with the hash id alone, so equal ids give equal blocks in every entry and
    every run), cut to length, or padded with filler seeded by the entry's line. Entries whose hash_ids share
    their first k ids therefore share a prefix of k full blocks (less where input_length cuts it shorter).
    The server's tokenizer decides the real token count; chars_per_token is the calibration knob.
    """
    if block_tokens <= 0:
        raise ValueError(f"block_tokens must be a positive number of tokens, got {block_tokens}")
    if not (math.isfinite(chars_per_token) and chars_per_token > 0):
        raise ValueError(f"chars_per_token must be a positive finite number, got {chars_per_token}")
    target = round(entry.input_length * chars_per_token)
    block_chars = round(block_tokens * chars_per_token)
    text = "".join(filler_words(f"block:{hash_id}", block_chars) for hash_id in entry.hash_ids)[:target]
    return text + filler_words(f"filler:{entry.line}", target - len(text))
