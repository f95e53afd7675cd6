"""A warning-only coherence check for long decodes: empty output, loops, and control-character garbage."""

from __future__ import annotations

from dataclasses import asdict, dataclass

NGRAM_CHARS = 16
MIN_REPETITION_CHARS = 64
ALLOWED_CONTROL = frozenset("\n\t")


@dataclass(frozen=True)
class CoherenceReport:
    """What check_coherence measured on one output, and its warnings (empty when nothing looked wrong)."""

    chars: int
    repetition_ratio: float
    nonprintable_ratio: float
    warnings: tuple[str, ...]

    def as_dict(self) -> dict:
        """JSON form (warnings as a list)."""
        return {**asdict(self), "warnings": list(self.warnings)}


def repetition_ratio(text: str) -> float:
    """1 - distinct/total over the text's overlapping character 16-grams; 0.0 below 64 characters.

    Text that never repeats a 16-character run scores 0; a model stuck in a loop of period p scores about
    1 - p/(len - 15), approaching 1.
    """
    if len(text) < MIN_REPETITION_CHARS:
        return 0.0
    total = len(text) - NGRAM_CHARS + 1
    distinct = len({text[i : i + NGRAM_CHARS] for i in range(total)})
    return 1.0 - distinct / total


def nonprintable_ratio(text: str) -> float:
    """Characters that are not str.isprintable() and not newline or tab, over all characters; 0.0 for ''."""
    if not text:
        return 0.0
    return sum(1 for c in text if not c.isprintable() and c not in ALLOWED_CONTROL) / len(text)


def check_coherence(text: str | None, max_repetition: float = 0.5, max_nonprintable: float = 0.05) -> CoherenceReport:
    """Warnings, never errors, for one output: empty, looping, or full of control characters.

    Rules: "empty output" when text is None or whitespace only; repetition_ratio(text) > max_repetition;
    nonprintable_ratio(text) > max_nonprintable. Each warning names the measured value and its threshold.
    """
    for name, limit in (("max_repetition", max_repetition), ("max_nonprintable", max_nonprintable)):
        if not 0.0 <= limit <= 1.0:
            raise ValueError(f"{name} is a ratio and must be within [0, 1], got {limit}")
    text = text or ""
    repetition = repetition_ratio(text)
    nonprintable = nonprintable_ratio(text)
    warnings = []
    if not text.strip():
        warnings.append("empty output")
    if repetition > max_repetition:
        warnings.append(f"repetition {repetition:.3f} > {max_repetition:.3f}: the output loops")
    if nonprintable > max_nonprintable:
        warnings.append(
            f"non-printable {nonprintable:.3f} > {max_nonprintable:.3f}: the output has control or invalid characters"
        )
    return CoherenceReport(len(text), repetition, nonprintable, tuple(warnings))
