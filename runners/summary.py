"""`summary.md` and `summary.json`, regenerated from the run directory alone.

The per-arm table uses primary steps only (clean timing); percentiles are recomputed over every
request of the arm from requests.jsonl, never averaged across steps.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

from runners.files import read_json, read_jsonl, write_atomic, write_json_atomic
from runners.plan import Plan, StepKey
from runners.replay.metrics import PhaseStats, phase_stats
from runners.replay.records import RequestRecord
from runners.rundir import RunDir

KERNEL_KEY = "CUTE_WO_SPLIT"


@dataclass(frozen=True)
class ArmRow:
    """One row of the per-arm table."""

    arm: str
    effective_wo_split: str
    env_status: str  # verified | unverified | mismatch | not started
    steps_done: int
    steps_total: int
    stats: PhaseStats


@dataclass(frozen=True)
class StepRow:
    """One step and how it stands; `results` is the kind's own verdict line (GSM8K accuracy, ...)."""

    step: StepKey
    kind: str
    done: bool
    stats: PhaseStats | None
    results: str = ""


def _env_status(run: RunDir, arm: str) -> tuple[str, str]:
    try:
        eff = read_json(run.effective_env_path(arm))
    except (FileNotFoundError, ValueError):
        return "not started", "-"
    reported = eff.get("reported") or {}
    wo_split = reported.get(KERNEL_KEY, "unverified")
    if eff.get("mismatches"):
        return "mismatch", wo_split
    return ("verified" if eff.get("reported") is not None else "unverified"), wo_split


def _phase_record(run: RunDir, step: StepKey) -> dict:
    try:
        record = read_json(run.step_dir(step) / "phase.json")
    except (FileNotFoundError, ValueError):
        return {}
    return record if isinstance(record, dict) else {}


def _step_records(run: RunDir, step: StepKey) -> tuple[list[RequestRecord], float]:
    records = [RequestRecord.from_dict(r) for r in read_jsonl(run.step_dir(step) / "requests.jsonl")]
    try:
        wall = float(_phase_record(run, step)["stats"]["wall_s"])
    except (KeyError, TypeError, ValueError):
        wall = 0.0
    return records, wall


def results_line(record: dict) -> str:
    """A step's own results in a few words: GSM8K accuracy, coherence warnings, goodput, server metrics."""
    parts = []
    gsm = record.get("gsm8k")
    if gsm:
        parts.append(
            f"GSM8K strict {gsm['strict_correct']}/{gsm['n']}, flexible {gsm['flexible_correct']}/{gsm['n']}"
        )
    coherence = record.get("coherence")
    if coherence:
        parts.append(f"coherence warnings {coherence['with_warnings']}/{coherence['checked']}")
    goodput = (record.get("stats") or {}).get("goodput_req_s")
    if goodput is not None:
        parts.append(f"goodput {goodput:.2f} req/s")
    metrics = record.get("server_metrics")
    if metrics:
        kv = metrics.get("kv_cache_usage_perc_max")
        kv_text = "n/a" if kv is None else f"{kv:.0%}"
        parts.append(
            f"server: running max {_fmt(metrics.get('num_requests_running_max'), 0)}, "
            f"waiting max {_fmt(metrics.get('num_requests_waiting_max'), 0)}, KV max {kv_text}"
        )
    return "; ".join(parts)


def collect(run: RunDir, plan: Plan) -> tuple[list[ArmRow], list[StepRow]]:
    """Per-arm rows (primary steps) and per-step rows, from the files in `run`."""
    arms, steps = [], []
    for arm in plan.arms:
        records: list[RequestRecord] = []
        wall = 0.0
        primary = [s for s in plan.steps() if s.arm == arm.name and s.mode == "primary"]
        done = [s for s in primary if run.is_done(s)]
        for step in done:
            recs, w = _step_records(run, step)
            records += recs
            wall += w
        status, wo_split = _env_status(run, arm.name)
        arms.append(ArmRow(arm.name, wo_split, status, len(done), len(primary), phase_stats(records, wall)))
    for step in plan.steps():
        phase = plan.phase(step.phase)
        if run.is_done(step):
            stats = phase_stats(*_step_records(run, step), phase.percentiles)
            steps.append(StepRow(step, phase.kind, True, stats, results_line(_phase_record(run, step))))
        else:
            steps.append(StepRow(step, phase.kind, False, None))
    return arms, steps


def _fmt(value: float | None, digits: int = 1) -> str:
    return "n/a" if value is None else f"{value:.{digits}f}"


def render_markdown(run_id: str, plan: Plan, status: str, arms: list[ArmRow], steps: list[StepRow]) -> str:
    """The summary as Markdown."""
    lines = [
        f"# Soak summary: {run_id}",
        "",
        f"Plan `{plan.name}`{f' ({plan.description})' if plan.description else ''}. Status: **{status}**.",
        "",
        "## Arms (primary steps)",
        "",
        "| arm | CUTE_WO_SPLIT (effective) | env | steps | requests ok | failed | wall s "
        "| TTFT p50 ms | TTFT p95 ms | TPOT p50 ms | TPOT p95 ms | output tok/s |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for a in arms:
        s = a.stats
        lines.append(
            f"| {a.arm} | {a.effective_wo_split} | {a.env_status} | {a.steps_done}/{a.steps_total} | {s.ok} "
            f"| {s.failed} | {_fmt(s.wall_s, 2)} | {_fmt(s.ttft_p50_ms)} | {_fmt(s.ttft_p95_ms)} "
            f"| {_fmt(s.tpot_p50_ms, 2)} | {_fmt(s.tpot_p95_ms, 2)} | {_fmt(s.output_tok_s)} |"
        )
    lines += [
        "",
        "## Steps",
        "",
        "| step | kind | state | requests ok | failed | wall s | TTFT p50 ms | TPOT p50 ms | results |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for row in steps:
        s = row.stats
        if s is None:
            lines.append(f"| {row.step.path} | {row.kind} | not done | | | | | | |")
        else:
            lines.append(
                f"| {row.step.path} | {row.kind} | done | {s.ok} | {s.failed} | {_fmt(s.wall_s, 2)} "
                f"| {_fmt(s.ttft_p50_ms)} | {_fmt(s.tpot_p50_ms, 2)} | {row.results} |"
            )
    lines += [
        "",
        "TTFT, TPOT and output tok/s follow vLLM's `bench serve` definitions (docs/architecture.md); "
        "raw per-request records are in `arms/<arm>/<mode>/<phase>/<rep>/requests.jsonl`.",
        "",
    ]
    return "\n".join(lines)


def write_summary(run: RunDir, plan: Plan) -> tuple[list[ArmRow], list[StepRow]]:
    """Write summary.md and summary.json atomically; returns the rows."""
    info = run.info()
    state = run.read_state()
    status = state.label() if state else "created"
    arms, steps = collect(run, plan)
    write_atomic(run.summary_md, render_markdown(info["run_id"], plan, status, arms, steps))
    write_json_atomic(
        run.summary_json,
        {
            "run_id": info["run_id"],
            "plan": plan.name,
            "status": status,
            "arms": [asdict(a) for a in arms],
            "steps": [
                {"step": r.step.as_dict(), "kind": r.kind, "done": r.done, "results": r.results,
                 "stats": r.stats.as_dict() if r.stats else None}
                for r in steps
            ],
        },
    )
    return arms, steps
