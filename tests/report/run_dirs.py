"""Real run directories with measured steps, written without a soak: `synthetic_run` makes the run (plan copy,
run.json) and `measured_step` writes a step's DONE marker, phase.json and requests.jsonl as the runner does."""

from __future__ import annotations

from pathlib import Path

import orjson

from runners.plan.steps import StepKey
from runners.run.files import write_json_atomic
from runners.run.rundir import RunDir
from runners.testbed.soak_writer import synthetic_run
from tests.support.plans import write_plan
from tests.support.records import NS_PER_MS, request_record

TTFT_MS = 10.0
OUTPUT_TOKENS = 8
REQUESTS = 4


def measured_step(run: RunDir, step: StepKey, tpot_ms: float, wall_s: float = 2.0) -> None:
    """A done step of REQUESTS ok requests, each TTFT_MS to its first token and `tpot_ms` per later token."""
    directory = run.step_dir(step)
    directory.mkdir(parents=True, exist_ok=True)
    e2e_ms = TTFT_MS + tpot_ms * (OUTPUT_TOKENS - 1)
    records = [
        request_record(index=i, sent_ns=0, ttft_ns=int(TTFT_MS * NS_PER_MS), e2e_ns=int(e2e_ms * NS_PER_MS),
                       output_tokens=OUTPUT_TOKENS, output_tokens_source="usage", ended_ns=int(e2e_ms * NS_PER_MS))
        for i in range(REQUESTS)
    ]  # fmt: skip
    (directory / "requests.jsonl").write_bytes(
        b"".join(orjson.dumps(r.as_dict(), option=orjson.OPT_APPEND_NEWLINE) for r in records)
    )
    write_json_atomic(directory / "phase.json", {"stats": {"wall_s": wall_s, "requests": REQUESTS}})
    run.mark_done(step, {})


def measured_run(base: Path, tpot_ms: dict[str, float], max_tokens: int = 16) -> Path:
    """A run of write_plan's two arms (split1, the baseline, and split8) with one `replay` phase of `max_tokens`
    tokens, where each arm named in `tpot_ms` has its one step done at that TPOT; the others have no data."""
    base.mkdir(parents=True, exist_ok=True)
    run = synthetic_run(base, write_plan(base / "plan", max_tokens=max_tokens))
    for arm, tpot in tpot_ms.items():
        measured_step(run, StepKey(arm, "primary", "replay", 0), tpot)
    return run.root
