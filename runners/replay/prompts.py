"""Prompt sources for replay phases: built-in prompts, or the first user turn of a ShareGPT file."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path


class DatasetError(ValueError):
    """A dataset that cannot be used; the message names the file and the entry."""


@dataclass(frozen=True)
class Prompt:
    """A prompt's text and where it came from (`builtin:3`, `sharegpt:<id>`)."""

    text: str
    source: str


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


def builtin_prompts() -> list[Prompt]:
    """The built-in prompts, always available (no dataset file needed)."""
    return [Prompt(text, f"builtin:{i}") for i, text in enumerate(BUILTIN_PROMPTS)]


def load_sharegpt(path: Path) -> list[Prompt]:
    """First human turn of every conversation in a ShareGPT-format JSON file.

    The file is a list of `{"id": ..., "conversations": [{"from": "human", "value": ...}, ...]}`;
    entries without a human turn are skipped. Raises DatasetError naming the file and entry.
    """
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise DatasetError(f"{path}: no such dataset file") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise DatasetError(f"{path}: not a readable JSON file: {exc}") from None
    if not isinstance(data, list):
        raise DatasetError(f"{path}: expected a JSON list of conversations (ShareGPT format)")
    prompts = []
    for i, entry in enumerate(data):
        turns = entry.get("conversations") if isinstance(entry, dict) else None
        if not isinstance(turns, list):
            raise DatasetError(f"{path}: entry {i} has no 'conversations' list (ShareGPT format)")
        first = next((t for t in turns if isinstance(t, dict) and t.get("from") in ("human", "user")), None)
        if first and isinstance(first.get("value"), str) and first["value"].strip():
            prompts.append(Prompt(first["value"], f"sharegpt:{entry.get('id', i)}"))
    if not prompts:
        raise DatasetError(f"{path}: no conversation has a human turn")
    return prompts


def select_prompts(pool: list[Prompt], count: int, max_prompt_chars: int, origin: str) -> list[Prompt]:
    """`count` prompts from `pool`, cycling when needed; prompts over `max_prompt_chars` are dropped first.

    The length filter runs before counting, so a pathological prompt never takes a budgeted slot.
    """
    eligible = [p for p in pool if len(p.text) <= max_prompt_chars]
    if not eligible:
        raise DatasetError(f"{origin}: no prompt is at most {max_prompt_chars} characters (raise max_prompt_chars)")
    return [eligible[i % len(eligible)] for i in range(count)]
