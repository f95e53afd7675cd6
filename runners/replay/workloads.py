"""Phase kinds as workloads: what to send, when, and how to judge the answers.

`prepare` turns a phase of a plan into conversations, a request shape and arrivals, after dropping the
prompts that are too long (over `max_prompt_chars`, then, where the target can count them, over its
`max_model_len` in tokens with the request's `max_tokens`) before any is counted; `evaluate`
turns the finished requests into the kind's own results (GSM8K accuracy, long-decode coherence)
and writes any per-item file next to `requests.jsonl`.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from runners.datasets.plan_data import DataUnavailable, data_path
from runners.plan.load import LoadedPlan
from runners.plan.phases import (
    ConcurrentPhase,
    Gsm8kPhase,
    LongDecodePhase,
    OpenLoopFields,
    Phase,
    ShareGptPhase,
    TracePhase,
)
from runners.replay.arrivals import constant_offsets, gamma_offsets
from runners.replay.coherence import check_coherence
from runners.replay.dispatch import Arrivals, RequestShape
from runners.replay.gsm8k import (
    Gsm8kItem,
    accuracy,
    build_prompt,
    fewshot_prefixes,
    load_gsm8k,
    sample_items,
    score,
)
from runners.replay.prompts import (
    Conversation,
    DatasetError,
    Turn,
    builtin_conversations,
    cycle,
    load_sharegpt,
    within_chars,
)
from runners.replay.records import RequestRecord
from runners.replay.token_lengths import NOT_ASKED, LengthFilter, TokenLimit
from runners.replay.trace import load_trace, synthesize_prompt, trace_offsets
from runners.run.files import JsonlWriter

UNCAPPED = 1_000_000
GSM8K_FILE = "gsm8k.jsonl"
COHERENCE_FILE = "coherence.jsonl"


@dataclass(frozen=True)
class Workload:
    """A phase ready to send; `prompt_filter` says what was dropped for length, and why (phase.json)."""

    conversations: list[Conversation]
    shape: RequestShape
    arrivals: Arrivals
    prompt_filter: dict


async def prepare(
    phase: Phase, loaded: LoadedPlan, arrival_seed: int = 0, limit: TokenLimit | str = NOT_ASKED
) -> Workload:
    """The conversations, request shape and arrivals of `phase`; raises DatasetError for bad inputs.

    `limit` is the target's context length and token counter (or why there is none): conversations that
    do not fit it are dropped before counting, like those over `max_prompt_chars` (trace entries are not
    filtered by characters: their lengths are the trace's).
    """
    keep_text = isinstance(phase, (Gsm8kPhase, LongDecodePhase))
    shape = RequestShape(
        endpoint=phase.endpoint,
        max_tokens=phase.max_tokens,
        temperature=phase.temperature,
        seed=phase.seed,
        ignore_eos=phase.ignore_eos,
        stop=tuple(phase.stop),
        http_timeout_s=phase.http_timeout_s,
        history=phase.history if isinstance(phase, ShareGptPhase) else "recorded",
        keep_text=keep_text,
    )
    lengths = LengthFilter(limit, phase.endpoint, phase.max_tokens)
    if isinstance(phase, TracePhase):
        entries = load_trace(_data_file(loaded, phase.trace, "trace"))[: phase.requests]
        pool = [
            Conversation(
                f"trace:{e.line}",
                (Turn(synthesize_prompt(e, phase.block_tokens, phase.chars_per_token)),),
                max_tokens=max(1, e.output_length),
            )
            for e in entries
        ]
        fit = {c.source for c in await lengths.fitting(pool, None, phase.trace)}
        offsets = trace_offsets(entries, phase.time_scale)  # from every entry: a dropped one keeps the clock
        kept = [(c, t) for c, t in zip(pool, offsets, strict=True) if c.source in fit]
        arrivals = Arrivals(phase.concurrency, [t for _, t in kept])
        return Workload([c for c, _ in kept], shape, arrivals, _filter_report(None, None, lengths))
    if isinstance(phase, Gsm8kPhase):
        conversations, over_chars = await _gsm8k_conversations(phase, loaded, lengths)
    else:
        turns = phase.max_turns if isinstance(phase, ShareGptPhase) else 1
        count = phase.streams if isinstance(phase, ConcurrentPhase) else phase.requests
        pool = (
            builtin_conversations(turns)
            if phase.dataset == "builtin"
            else load_sharegpt(_data_file(loaded, phase.dataset, "dataset"), turns)
        )
        eligible = within_chars(pool, phase.max_prompt_chars, phase.dataset)
        over_chars = len(pool) - len(eligible)
        conversations = cycle(await lengths.fitting(eligible, count, phase.dataset), count)
    if isinstance(phase, ConcurrentPhase):
        arrivals = Arrivals(len(conversations), [0.0] * len(conversations))
    else:
        arrivals = _arrivals(phase, len(conversations), arrival_seed)
    return Workload(conversations, shape, arrivals, _filter_report(phase.max_prompt_chars, over_chars, lengths))


def _data_file(loaded: LoadedPlan, value: str, field: str) -> Path:
    """The local file behind a data field (a Hub file's cached copy); DatasetError when it is not cached."""
    try:
        return data_path(loaded, value, field)
    except DataUnavailable as exc:
        raise DatasetError(str(exc)) from None


def _filter_report(max_prompt_chars: int | None, over_chars: int | None, lengths: LengthFilter) -> dict:
    """phase.json's `prompt_filter`: conversations of the pool dropped for characters, then for tokens.

    The character filter sees the whole pool; the token check counts the pool in order only until enough
    conversations fit, so `over_max_model_len` counts the ones it found. None: that filter did not run.
    """
    return {"max_prompt_chars": max_prompt_chars, "over_max_prompt_chars": over_chars, **lengths.report()}


def _arrivals(phase: OpenLoopFields, n: int, seed: int) -> Arrivals:
    """Closed loop (default one worker) or an open-loop schedule at `phase.rate`."""
    if phase.arrival == "closed":
        return Arrivals(phase.concurrency or 1)
    rate = phase.rate or 1.0
    if phase.arrival == "constant":
        offsets = constant_offsets(n, rate)
    else:
        offsets = gamma_offsets(n, rate, phase.burstiness if phase.arrival == "gamma" else 1.0, seed)
    return Arrivals(phase.concurrency or UNCAPPED, offsets)


@dataclass(frozen=True)
class Gsm8kPool:
    """A GSM8K phase's test questions whose lm-eval prompt fits `max_prompt_chars`, those prompts by question
    index, and the sizes of both splits (what `validate` says of the phase)."""

    eligible: list[Gsm8kItem]
    prompts: dict[int, str]
    test_size: int
    train_size: int

    def conversation(self, item: Gsm8kItem) -> Conversation:
        """The question as one turn of its few-shot prompt."""
        return Conversation(f"gsm8k:{item.index}", (Turn(self.prompts[item.index]),))


def gsm8k_pool(phase: Gsm8kPhase, test_file: Path, train_file: Path) -> Gsm8kPool:
    """Every test question's lm-eval few-shot prompt, over-long ones (characters) left out; DatasetError for a
    split that cannot be read, too few train problems for `fewshot`, or no prompt short enough."""
    test, train = load_gsm8k(test_file), load_gsm8k(train_file)
    if phase.fewshot > len(train):
        raise DatasetError(f"{train_file}: {len(train)} train problems for {phase.fewshot}-shot prompts")
    prefixes = fewshot_prefixes(train, (i.index for i in test), phase.fewshot, phase.fewshot_seed)
    prompts = {i.index: build_prompt(prefixes[i.index], i) for i in test}
    eligible = [i for i in test if len(prompts[i.index]) <= phase.max_prompt_chars]
    if not eligible:
        raise DatasetError(f"{test_file}: no GSM8K prompt is at most {phase.max_prompt_chars} characters")
    return Gsm8kPool(eligible, prompts, len(test), len(train))


async def _gsm8k_conversations(
    phase: Gsm8kPhase, loaded: LoadedPlan, lengths: LengthFilter
) -> tuple[list[Conversation], int]:
    """Sampled questions with their lm-eval few-shot prompts, and how many were over `max_prompt_chars`.

    Over-long prompts (characters, then tokens) leave the pool before sampling.
    """
    pool = gsm8k_pool(
        phase, _data_file(loaded, phase.test_file, "test_file"), _data_file(loaded, phase.train_file, "train_file")
    )
    fit = {
        c.source for c in await lengths.fitting([pool.conversation(i) for i in pool.eligible], None, phase.test_file)
    }
    items = sample_items([i for i in pool.eligible if f"gsm8k:{i.index}" in fit], phase.questions, phase.sample_seed)
    return [pool.conversation(i) for i in items], pool.test_size - len(pool.eligible)


def evaluate(phase: Phase, loaded: LoadedPlan, records: list[RequestRecord], step_dir: Path) -> dict:
    """The kind's own results for phase.json; GSM8K and long-decode write a per-item JSONL too."""
    if isinstance(phase, Gsm8kPhase):
        return _evaluate_gsm8k(phase, loaded, records, step_dir / GSM8K_FILE)
    if isinstance(phase, LongDecodePhase):
        return _evaluate_coherence(phase, records, step_dir / COHERENCE_FILE)
    return {}


def _evaluate_gsm8k(phase: Gsm8kPhase, loaded: LoadedPlan, records: list[RequestRecord], out: Path) -> dict:
    """Score every question sent; a failed request (timeout included) is wrong, with its reason."""
    items = {i.index: i for i in load_gsm8k(_data_file(loaded, phase.test_file, "test_file"))}
    scores = []
    with JsonlWriter(out) as writer:
        for rec in sorted(records, key=lambda r: r.index):
            item = items[int(rec.prompt_source.split(":", 1)[1])]
            response = rec.output_text if rec.status == "ok" else None
            s = score(item, response)
            scores.append(s)
            writer.append({
                "question_index": item.index, "target": item.target, "strict": s.strict, "flexible": s.flexible,
                "strict_correct": s.strict_correct, "flexible_correct": s.flexible_correct,
                "status": rec.status, "error": rec.error, "response": rec.output_text,
            })  # fmt: skip
    return {"gsm8k": accuracy(scores) | {"questions_planned": phase.questions, "file": out.name}}


def _evaluate_coherence(phase: LongDecodePhase, records: list[RequestRecord], out: Path) -> dict:
    """Warning-only coherence of every successful long decode."""
    warned = 0
    with JsonlWriter(out) as writer:
        for rec in sorted(records, key=lambda r: r.index):
            if rec.status != "ok":
                continue
            report = check_coherence(rec.output_text, phase.max_repetition, phase.max_nonprintable)
            warned += bool(report.warnings)
            writer.append({"index": rec.index, "source": rec.prompt_source} | report.as_dict())
    return {"coherence": {"checked": sum(r.status == "ok" for r in records), "with_warnings": warned,
                          "file": out.name}}  # fmt: skip
