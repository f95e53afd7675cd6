"""GSM8K as lm-evaluation-harness's `gsm8k` task (version 3.0) prompts and scores it. Pure functions.

Read from lm-eval's `lm_eval/tasks/gsm8k/gsm8k.yaml`, `lm_eval/filters/extraction.py` (RegexFilter),
`lm_eval/api/metrics.py` (exact_match_hf_evaluate), `lm_eval/api/samplers.py` (ContextSampler) and
`lm_eval/api/task.py` (fewshot_context, build_qa_turn):
- prompt  = 5 train examples `Question: {q}\\nAnswer: {answer}\\n\\n`, then `Question: {q}\\nAnswer:`.
- strict-match     = first match of `#### (\\-?[0-9\\.\\,]+)`.
- flexible-extract = last match of `(-?[$0-9.,]{2,})|(-?[0-9]+)`, its non-empty group.
- exact_match      = equality after deleting `,`, `\\$`, `(?s).*#### `, `\\.$` (in that order) and lower-casing,
  applied to the extraction and to the full gold solution alike.
"""

from __future__ import annotations

import json
import random
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from runners.replay.prompts import DatasetError

STOP = ["Question:", "</s>", "<|im_end|>"]
FEWSHOT_DELIMITER = "\n\n"
TARGET_DELIMITER = " "
ANSWER_MARKER = "#### "
STRICT_PATTERN = re.compile(r"#### (\-?[0-9\.\,]+)")
FLEXIBLE_PATTERN = re.compile(r"(-?[$0-9.,]{2,})|(-?[0-9]+)")
IGNORED_PATTERNS = (re.compile(","), re.compile(r"\$"), re.compile(r"(?s).*#### "), re.compile(r"\.$"))


@dataclass(frozen=True)
class Gsm8kItem:
    """One GSM8K problem: its 0-based line in the file, the question, the gold solution and its final answer."""

    index: int
    question: str
    answer: str
    target: str


@dataclass(frozen=True)
class Gsm8kScore:
    """What each lm-eval filter extracted from a response (None: no match) and whether it matched the gold."""

    strict: str | None
    flexible: str | None
    strict_correct: bool
    flexible_correct: bool


def load_gsm8k(path: Path) -> list[Gsm8kItem]:
    """Every problem of a GSM8K file: JSONL (`{"question": ..., "answer": "...\\n#### 42"}` per line) or the
    Hub's parquet (columns `question` and `answer`, one row per problem, as lm-evaluation-harness reads it).

    Blank JSONL lines are skipped; `index` is the 0-based line (or row) number and `target` the text after
    the last `#### `, stripped. Raises DatasetError naming the file and the 1-based line (row) for anything else.
    """
    rows = _parquet_rows(path) if path.suffix == ".parquet" else _jsonl_rows(path)
    items = [_parse_row(path, i, row) for i, row in rows]
    if not items:
        raise DatasetError(f"{path}: no GSM8K problems in the file")
    return items


def _jsonl_rows(path: Path) -> list[tuple[int, object]]:
    """(line index, parsed JSON) of each non-blank line."""
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except FileNotFoundError:
        raise DatasetError(f"{path}: no such dataset file") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise DatasetError(f"{path}: not a readable UTF-8 text file: {exc}") from None
    rows = []
    for i, line in enumerate(lines):
        if line.strip():
            try:
                rows.append((i, json.loads(line)))
            except json.JSONDecodeError as exc:
                raise DatasetError(f"{path}:{i + 1}: not valid JSON ({exc.msg} at column {exc.colno})") from None
    return rows


def _parquet_rows(path: Path) -> list[tuple[int, object]]:
    """(row index, {"question", "answer"}) of each row of a parquet file."""
    import pyarrow
    import pyarrow.parquet

    try:
        table = pyarrow.parquet.read_table(path, columns=["question", "answer"])
    except FileNotFoundError:
        raise DatasetError(f"{path}: no such dataset file") from None
    except (OSError, pyarrow.ArrowException) as exc:
        raise DatasetError(f"{path}: not a GSM8K parquet file with 'question' and 'answer' columns: {exc}") from None
    return list(enumerate(table.to_pylist()))


def _parse_row(path: Path, index: int, row: object) -> Gsm8kItem:
    """One JSONL line or parquet row as a Gsm8kItem, or DatasetError naming `path:line` and what is wrong."""
    where = f"{path}:{index + 1}"
    if not isinstance(row, dict):
        raise DatasetError(f"{where}: expected a JSON object with 'question' and 'answer'")
    for field in ("question", "answer"):
        if not isinstance(row.get(field), str):
            raise DatasetError(f"{where}: missing or non-string field '{field}'")
    answer = row["answer"]
    if ANSWER_MARKER not in answer:
        raise DatasetError(f"{where}: answer has no '{ANSWER_MARKER}' final-answer marker")
    target = answer.rpartition(ANSWER_MARKER)[2].strip()
    if not target:
        raise DatasetError(f"{where}: answer has nothing after '{ANSWER_MARKER}'")
    return Gsm8kItem(index=index, question=row["question"], answer=answer, target=target)


def fewshot_prefixes(
    train: Sequence[Gsm8kItem], doc_indices: Iterable[int], k: int = 5, seed: int = 1234
) -> dict[int, str]:
    """lm-eval's few-shot context for each test document index in `doc_indices`.

    lm-eval seeds one `random.Random(seed)` per task and draws `sample(train, k)` for every test
    document in order, so document d gets draw d + 1 (examples in the order drawn). Each example is
    `Question: {q}\nAnswer:` + target delimiter " " + the full gold solution + fewshot delimiter
    "\n\n", so a prefix ends with the delimiter and the test question follows directly. The train
    split is not the test split, so nothing is excluded.
    """
    wanted = set(doc_indices)
    rng = random.Random(seed)
    pool = list(train)
    out = {}
    for doc in range(max(wanted, default=-1) + 1):
        examples = rng.sample(pool, k)
        if doc in wanted:
            out[doc] = "".join(
                f"Question: {ex.question}\nAnswer:{TARGET_DELIMITER}{ex.answer}{FEWSHOT_DELIMITER}" for ex in examples
            )
    return out


def build_prompt(prefix: str, item: Gsm8kItem) -> str:
    """The completion prompt: prefix + `Question: {q}\\nAnswer:` (no trailing space)."""
    return f"{prefix}Question: {item.question}\nAnswer:"


def extract_strict(text: str) -> str | None:
    """strict-match: the first match of `#### (\\-?[0-9\\.\\,]+)`, its group stripped; None if none."""
    found = STRICT_PATTERN.findall(text)
    return found[0].strip() if found else None


def extract_flexible(text: str) -> str | None:
    """flexible-extract: the last match of `(-?[$0-9.,]{2,})|(-?[0-9]+)`; None if none.

    Of the last match's groups the non-empty one is kept, stripped (lm-eval's group_select -1); every
    alternative matches at least one character, so exactly one group is non-empty.
    """
    found = FLEXIBLE_PATTERN.findall(text)
    if not found:
        return None
    return next(group for group in found[-1] if group).strip()


def normalize(text: str) -> str:
    """exact_match's preprocessing: delete `,` then `\\$` then `(?s).*#### ` then `\\.$`, then lower-case.

    No stripping and no punctuation removal here (ignore_punctuation is false); the extractors strip.
    `(?s).*#### ` is greedy, so on a full gold solution it leaves only the text after the last `#### `.
    """
    for pattern in IGNORED_PATTERNS:
        text = pattern.sub("", text)
    return text.lower()


def score(item: Gsm8kItem, response: str | None) -> Gsm8kScore:
    """Both filters on a response, each compared as normalize(extraction) == normalize(full gold solution).

    A None response (failed or timed-out request) scores wrong on both; so does no extraction (lm-eval's
    "[invalid]" fallback never equals a gold number).
    """
    if response is None:
        return Gsm8kScore(strict=None, flexible=None, strict_correct=False, flexible_correct=False)
    gold = normalize(item.answer)
    strict, flexible = extract_strict(response), extract_flexible(response)
    return Gsm8kScore(
        strict=strict,
        flexible=flexible,
        strict_correct=strict is not None and normalize(strict) == gold,
        flexible_correct=flexible is not None and normalize(flexible) == gold,
    )


def sample_items(items: Sequence[Gsm8kItem], n: int = 50, seed: int = 42) -> list[Gsm8kItem]:
    """n items drawn without replacement by `random.Random(seed).sample`, returned in file order.

    All items (in file order) when n >= len(items).
    """
    if n >= len(items):
        return list(items)
    return sorted(random.Random(seed).sample(list(items), n), key=lambda item: item.index)


def accuracy(scores: Sequence[Gsm8kScore]) -> dict:
    """Counts and accuracies of scores; the accuracies are None for no scores.

    Keys: `n`, `strict_correct`, `flexible_correct`, `strict_accuracy` = strict_correct / n,
    `flexible_accuracy` = flexible_correct / n.
    """
    n = len(scores)
    strict = sum(s.strict_correct for s in scores)
    flexible = sum(s.flexible_correct for s in scores)
    return {
        "n": n,
        "strict_correct": strict,
        "flexible_correct": flexible,
        "strict_accuracy": strict / n if n else None,
        "flexible_accuracy": flexible / n if n else None,
    }
