"""Every data file a plan's phases read, opened and parsed before any target starts (`validate`, `run`).

The same loaders the steps use (ShareGPT JSON or JSONL, GSM8K JSONL or parquet, a trace's JSONL) read each file
and the character filter runs as the step will run it, so a file that would fail a step hours into a soak fails
here instead, naming the field and the line, and a usable one says how many prompts it gives. Only the token
filter waits for the target (it needs its tokenizer). A Hub file not in the cache is left to `data pull`.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from runners.datasets.plan_data import DataUnavailable, data_path
from runners.plan.load import LoadedPlan
from runners.plan.phases import Gsm8kPhase, Phase, ShareGptPhase, TracePhase, phase_data
from runners.replay.prompts import DatasetError, load_sharegpt, within_chars
from runners.replay.trace import load_trace
from runners.replay.workloads import gsm8k_pool


@dataclass(frozen=True)
class PhaseData:
    """What one phase's data gives (`summary`), or why it cannot be used (`error`); `where` is `phases[i]`."""

    where: str
    phase: str
    summary: str = ""
    error: str | None = None


def check_phase_data(loaded: LoadedPlan) -> list[PhaseData]:
    """Each phase with a data file: its usable prompts, or the error its step would hit (Hub files not cached
    are skipped: `data pull`, or `run`, fetches them first)."""
    out = []
    for i, phase in enumerate(loaded.plan.phases):
        fields = phase_data(phase)
        if not fields:
            continue
        where = f"phases[{i}]"
        try:
            paths = {field: data_path(loaded, getattr(phase, field), field) for field in fields}
        except DataUnavailable:
            continue
        try:
            summary = _summary(phase, paths)
        except DatasetError as exc:
            out.append(PhaseData(where, phase.name, error=f"{where} ({phase.name}): {exc}"))
            continue
        out.append(PhaseData(where, phase.name, summary))
    return out


def _summary(phase: Phase, paths: dict[str, Path]) -> str:
    """The phase's data read as its step reads it (the same loaders and character filter), said in a line;
    DatasetError when it cannot be used."""
    limit = phase.max_prompt_chars
    if isinstance(phase, TracePhase):
        entries = load_trace(paths["trace"])
        used = min(len(entries), phase.requests or len(entries))
        return f"{len(entries)} trace entries, {used} replayed"
    if isinstance(phase, Gsm8kPhase):
        pool = gsm8k_pool(phase, paths["test_file"], paths["train_file"])
        fit = len(pool.eligible)
        return (
            f"{pool.test_size} test and {pool.train_size} train problems; {fit} {phase.fewshot}-shot prompts within "
            f"max_prompt_chars {limit}, {min(fit, phase.questions)} asked"
        )
    turns = phase.max_turns if isinstance(phase, ShareGptPhase) else 1
    pool = load_sharegpt(paths["dataset"], turns)
    fit = len(within_chars(pool, limit, str(paths["dataset"])))
    return f"{len(pool)} conversations, {fit} within max_prompt_chars {limit}"
