"""`summary.md` and `summary.json`, regenerated from the run directory alone (`gb10-console report`).

The summary leads with the per-arm headline table (GSM8K, wall mean and spread of the deciding
phase, TPOT p50/p95, long-decode TPOT p95, verdict), then every gate with its failed criteria,
the reproduction Δ table when a prior run is given, the pooled per-arm and per-step tables, the
client's TTFT/ITL means beside the server's own per step, the region timings of steps that asked
for a dump, the plots, known limitations and provenance. Percentiles are recomputed over every
request of the pooled repetitions, never averaged across steps.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import asdict, dataclass
from pathlib import Path

from engine.units import NOT_MEASURED, number_text, percent_text
from runners.evidence.measurement import step_measurement
from runners.evidence.region_table import calibration_line, region_rows
from runners.evidence.results import ArmResult, RunResults, load_run_results
from runners.evidence.step_files import number, phase_record, recorded_pause, section
from runners.gates.evaluate import GateReport, evaluate_gates, gsm8k_correct, registry_for
from runners.gates.plan_diff import DIFFERENT_WORK, PlanDifference
from runners.gates.registry import Registry
from runners.gates.reproduction import DeltaRow
from runners.gates.result import STATUS_LABEL
from runners.replay.pauses import paused_text
from runners.report.summary_model import (
    ArmSummary,
    DoneStep,
    PendingStep,
    RegistrySource,
    Summary,
    write_summary,
)
from runners.run.files import write_atomic
from runners.run.rundir import RunDir, RunDirError

PLOTS_DIR = "plots"


@dataclass(frozen=True)
class ReportOutcome:
    """What `write_report` wrote; `plot_notes` says which plots were skipped and why."""

    summary_md: Path
    summary_json: Path
    plots: tuple[Path, ...]
    plot_notes: tuple[str, ...]
    results: RunResults
    gates: GateReport


def effective_arm_env(arm: ArmResult) -> str:
    """The arm's own keys as `K=V`, with the value the target reported where it did; `(none)` for an arm
    with no env of its own, `-` before its target started."""
    if arm.env_status == "not started":
        return "-"
    if not arm.env:
        return "(none)"
    return " ".join(f"{k}={arm.effective_env.get(k, v)}" for k, v in arm.env.items())


def env_status_text(arm: ArmResult) -> str:
    """`verified by EngineCore pid 4242 (vLLM 0.32.0)`, or the status (unverified, mismatch, not started)."""
    if arm.env_status == "verified" and arm.env_where:
        return f"verified by {arm.env_where}"
    return arm.env_status


def results_line(record: dict) -> str:
    """A step's own results in a few words: GSM8K accuracy, coherence warnings, goodput, server metrics,
    prompts dropped for length."""
    parts = []
    gsm = section(record, "gsm8k")
    if gsm:
        n = number_text(number(gsm.get("n")), 0)
        parts.append(
            f"GSM8K strict {number_text(number(gsm.get('strict_correct')), 0)}/{n}, "
            f"flexible {number_text(number(gsm.get('flexible_correct')), 0)}/{n}"
        )
    coherence = section(record, "coherence")
    if coherence:
        parts.append(
            f"coherence warnings {number_text(number(coherence.get('with_warnings')), 0)}/"
            f"{number_text(number(coherence.get('checked')), 0)}"
        )
    goodput = number(section(record, "stats").get("goodput_req_s"))
    if goodput is not None:
        parts.append(f"goodput {goodput:.2f} req/s")
    metrics = section(record, "server_metrics")
    if metrics:
        parts.append(_server_line(metrics))
    filtered = _filter_line(section(record, "prompt_filter"))
    if filtered:
        parts.append(filtered)
    return "; ".join(parts)


def _server_line(metrics: dict) -> str:
    """The server's own numbers of a step: gauges (or why they were not sampled), prefix cache, spec decode."""
    not_sampled = metrics.get("not_sampled") if isinstance(metrics.get("not_sampled"), dict) else {}

    def gauge(name: str, text: str) -> str:
        return "not sampled" if name in not_sampled else text

    running = gauge("num_requests_running", number_text(number(metrics.get("num_requests_running_max")), 0))
    waiting = gauge("num_requests_waiting", number_text(number(metrics.get("num_requests_waiting_max")), 0))
    kv = gauge("kv_cache_usage_perc", percent_text(number(metrics.get("kv_cache_usage_perc_max"))))
    line = f"server: running max {running}, waiting max {waiting}, KV max {kv}"
    hits = number(metrics.get("prefix_cache_hit_rate"))
    if hits is not None:
        line += f", prefix cache hits {percent_text(hits)}"
    accepted = number(metrics.get("spec_decode_acceptance_rate"))
    if accepted is not None:
        length = number_text(number(metrics.get("spec_decode_mean_acceptance_length")), 2)
        line += f", spec decode acceptance {percent_text(accepted)} (mean length {length})"
    return line


def _filter_line(filtered: dict) -> str | None:
    """Prompts dropped for length before counting, and whether token lengths were checked; None: nothing to say."""
    chars, tokens = number(filtered.get("over_max_prompt_chars")), number(filtered.get("over_max_model_len"))
    dropped = []
    if chars:
        dropped.append(f"{chars:.0f} over max_prompt_chars")
    if tokens:
        dropped.append(f"{tokens:.0f} over max_model_len {number_text(number(filtered.get('max_model_len')), 0)}")
    said = [f"prompts dropped: {', '.join(dropped)}"] if dropped else []
    if filtered.get("tokens_checked") is False:
        said.append("token lengths not checked")
    return "; ".join(said) or None


def _when(ts: float | None) -> str:
    return NOT_MEASURED if ts is None else dt.datetime.fromtimestamp(ts).strftime("%Y-%m-%d %H:%M:%S")


def _phase_name(name: str | None, kind: str = "") -> str:
    return f"phase `{name}`" if name else f"no {kind}phase in the plan"


def _reps(arm: ArmResult, phase: str | None) -> str:
    result = arm.phases.get(phase) if phase else None
    return f"{result.reps_done}/{result.reps_total}" if result else "-"


def _headline(results: RunResults, gates: GateReport) -> list[str]:
    d = results.deciding_phases()
    match = results.gates.gsm8k_match
    lines = [
        "## Verdicts",
        "",
        f"Baseline arm `{results.baseline}`. Wall time from {_phase_name(d.wall)}, TPOT from {_phase_name(d.tpot)}, "
        f"GSM8K ({match} match) from {_phase_name(d.gsm8k, 'GSM8K ')}, long decode from "
        f"{_phase_name(d.long_decode, 'long-decode ')}.",
        "",
        "| arm | GSM8K | wall mean s | wall sd s | reps | TPOT p50 ms | TPOT p95 ms | long-decode TPOT p95 ms "
        "| verdict |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for arm in results.arms:
        correct, n = gsm8k_correct(results, arm)
        wall, tpot, long = arm.phase(d.wall), arm.phase(d.tpot), arm.phase(d.long_decode)
        cells = [
            arm.name,
            NOT_MEASURED if correct is None else f"{correct:g}/{n}",
            number_text(wall.wall_mean_s if wall else None, 2),
            number_text(wall.wall_std_s if wall else None, 2),
            _reps(arm, d.wall),
            number_text(tpot.stats.tpot_p50_ms if tpot else None, 2),
            number_text(tpot.stats.tpot_p95_ms if tpot else None, 2),
            number_text(long.stats.tpot_p95_ms if long else None, 2),
            f"**{gates.verdicts.get(arm.name, 'no verdict')}**",
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return [*lines, ""]


def _gates(gates: GateReport) -> list[str]:
    lines = [
        "## Gates",
        "",
        "`FAIL` on a warning gate (coherence) is a warning only. `no data`: the numbers to judge it are missing.",
        "",
        "| arm | gate | status | verdict | failed or unjudged criteria |",
        "|---|---|---|---|---|",
    ]
    for g in gates.gates:
        status = STATUS_LABEL[g.status] + (" (warning)" if g.severity == "warning" and g.status == "fail" else "")
        criteria = "<br>".join(g.failed_criteria).replace("|", "\\|")
        lines.append(f"| {g.arm or '(run)'} | {g.name} | {status} | {g.verdict or ''} | {criteria} |")
    return [*lines, ""]


def delta_cells(row: DeltaRow) -> tuple[str, str, str, str, str]:
    """A Δ row's prior, current, Δ, bound and within as text (Δ in % for µs/ms/s rows, in questions for GSM8K)."""
    pct = row.unit != "questions"
    unit = "%" if pct else ""

    def value(v: float | None) -> str:
        return NOT_MEASURED if v is None else f"{v:.3f}" if pct else f"{v:g}"

    delta = NOT_MEASURED if row.delta is None else f"{row.delta:+.2f}%" if pct else f"{row.delta:+g}"
    bound = "info" if row.bound is None else f"±{row.bound:g}{unit}"
    within = {True: "yes", False: "no", None: "-"}[row.within]
    return value(row.prior), value(row.current), delta, bound, within


def delta_table(rows: list[DeltaRow] | tuple[DeltaRow, ...]) -> list[str]:
    """The reproduction Δ% table as Markdown lines."""
    lines = ["| arm | metric | prior | current | Δ | bound | within |", "|---|---|---|---|---|---|---|"]
    for r in rows:
        prior, current, delta, bound, within = delta_cells(r)
        within = "**no**" if r.within is False else within
        lines.append(f"| {r.arm} | {r.metric} ({r.unit}) | {prior} | {current} | {delta} | {bound} | {within} |")
    return lines


def _reproduction(gates: GateReport) -> list[str]:
    if gates.prior_run is None:
        return []
    verdict = next((g for g in gates.gates if g.name == "reproduction"), None)
    said = verdict.verdict if verdict and verdict.verdict else STATUS_LABEL["no_data"]
    head = f"## Reproduction of `{gates.prior_run}`: **{said}**"
    if gates.plan_differences:
        return [head, "", f"{DIFFERENT_WORK}:", "", *differences_table(gates.plan_differences), ""]
    return [head, "", *delta_table(gates.reproduction_rows), ""]


def differences_table(differences: tuple[PlanDifference, ...] | list[PlanDifference]) -> list[str]:
    """What differs between the prior run's plan and this run's, as Markdown lines (what, prior, this run)."""
    lines = ["| what differs | prior run | this run |", "|---|---|---|"]
    for d in differences:
        a, b, what = (text.replace("|", "\\|") for text in (d.a, d.b, d.what))
        lines.append(f"| {what} | {a} | {b} |")
    return lines


def _arms(results: RunResults) -> list[str]:
    lines = [
        "## Arms (primary steps)",
        "",
        "`wall s (sum)`: the arm's primary steps added up; `paused s`: dispatch paused during them (the console's "
        "`p`), of which the time nothing was in flight is left out of the wall time.",
        "",
        "| arm | arm env (effective) | env | steps | requests ok | failed | wall s (sum) | paused s "
        "| TTFT p50 ms | TTFT p95 ms | TPOT p50 ms | TPOT p95 ms | output tok/s |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for arm in results.arms:
        primary = [p for p in arm.phases.values() if p.mode == "primary"]
        done, total = sum(p.reps_done for p in primary), sum(p.reps_total for p in primary)
        s = arm.primary
        lines.append(
            f"| {arm.name} | {effective_arm_env(arm)} | {env_status_text(arm)} | {done}/{total} | {s.ok} "
            f"| {s.failed} | {number_text(s.wall_s, 2)} | {paused_text(*arm.primary_paused_s)} "
            f"| {number_text(s.ttft_p50_ms)} | {number_text(s.ttft_p95_ms)} | {number_text(s.tpot_p50_ms, 2)} "
            f"| {number_text(s.tpot_p95_ms, 2)} | {number_text(s.output_tok_s)} |"
        )
    return [*lines, ""]


def step_rows(results: RunResults) -> list[DoneStep | PendingStep]:
    """Every step of the plan: done or not, its stats from phase.json and its results line."""
    run = RunDir(results.root)
    rows: list[DoneStep | PendingStep] = []
    for step in results.plan.steps():
        kind = results.plan.phase(step.phase).kind
        if not run.is_done(step):
            rows.append(PendingStep(step=step, kind=kind, done=False, results="", stats=None))
            continue
        record = phase_record(run, step)
        rows.append(
            DoneStep(step=step, kind=kind, done=True, results=results_line(record),
                     stats=section(record, "stats") or None, pause=recorded_pause(record),
                     server_latency=section(record, "server_latency") or None,
                     measurement=step_measurement(step.path, record).check,
                     profile=section(record, "profile") or None,
                     region_timings=section(record, "region_timings") or None)
        )  # fmt: skip
    return rows


PROFILE_ROWS = 10


def _profiles(rows: list[DoneStep | PendingStep]) -> list[str]:
    """Each profiled step: what became of its trace, and the kernels (or CPU ops) that took the most time."""
    profiled = [r for r in rows if isinstance(r, DoneStep) and r.profile]
    if not profiled:
        return []
    lines = ["## Profiled steps", ""]
    for row in profiled:
        p = row.profile or {}
        path = row.step.path
        stop = f", stop_profile {number_text(number(p.get('stop_s')), 1)} s" if p.get("stop_s") is not None else ""
        files = p.get("files") or []
        where = f"; {len(files)} file(s) in `{path}/profile/`" if files else ""
        reason = f": {p.get('reason')}" if p.get("reason") else ""
        lines += [f"- `{path}`: **{p.get('status')}**{stop}{where}{reason}", ""]
        kernels = section(p, "kernels")
        table = [r for r in kernels.get("rows") or [] if isinstance(r, dict)][:PROFILE_ROWS]
        if table:
            what = "GPU kernels" if kernels.get("source") == "gpu" else "CPU ops (`cpu_op`: no GPU kernels traced)"
            lines += [f"  {what}, by total time ({kernels.get('kernels_seen')} seen):", "",
                      "  | name | calls | mean µs | total ms |", "  |---|---|---|---|"]  # fmt: skip
            lines += [f"  | `{r.get('name')}` | {r.get('n_calls')} | {number_text(number(r.get('mean_us')), 1)} "
                      f"| {number_text((number(r.get('total_us')) or 0.0) / 1000, 2)} |" for r in table]  # fmt: skip
            lines.append("")
        for note in kernels.get("notes") or []:
            lines += [f"  - not read: {note}", ""]
    return lines


def _steps(rows: list[DoneStep | PendingStep]) -> list[str]:
    lines = [
        "## Steps",
        "",
        "`wall s`: the step's own wall time, without the part of a pause when nothing was in flight; requests in "
        "flight during a pause are left out of its latency figures.",
        "",
        "| step | kind | state | requests ok | failed | wall s | paused s | TTFT p50 ms | TPOT p50 ms | results |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for row in rows:
        path = row.step.path
        if not isinstance(row, DoneStep):
            lines.append(f"| {path} | {row.kind} | not done | | | | | | | |")
            continue
        s, pause = row.stats or {}, row.pause
        paused = paused_text(pause.paused_s, pause.idle_s)
        if pause.requests:
            paused += f"; {pause.requests} request(s) in flight left out of latency"
        lines.append(
            f"| {path} | {row.kind} | done | {s.get('ok', NOT_MEASURED)} | {s.get('failed', NOT_MEASURED)} "
            f"| {number_text(s.get('wall_s'), 2)} | {paused} | {number_text(s.get('ttft_p50_ms'))} "
            f"| {number_text(s.get('tpot_p50_ms'), 2)} "
            f"| {row.results} |"
        )
    return [*lines, ""]


def _client_mean(stats: dict, name: str) -> float | None:
    return number(section(section(stats, "distributions"), name).get("mean"))


def _server_mean(latency: dict, name: str) -> float | None:
    return number(section(section(latency, "metrics"), name).get("mean_ms"))


def _latency_check(rows: list[DoneStep | PendingStep]) -> list[str]:
    lines = [
        "## Client vs server latency",
        "",
        "Means per step: the client's (`requests.jsonl`) beside the server's own `/metrics` histograms over the "
        "same step. ITL: one sample per streamed chunk on both sides.",
        "",
        "| step | requests client / server | TTFT mean ms client / server | ITL mean ms client / server | check |",
        "|---|---|---|---|---|",
    ]
    for row in rows:
        if not isinstance(row, DoneStep):
            continue
        stats, latency = row.stats or {}, row.server_latency or {}
        check = row.measurement
        served = number(latency.get("server_requests"))
        said = check.status if check.status == "agree" else f"**{check.status}**: {check.reason}"
        said = said.replace("|", "\\|")
        lines.append(
            f"| {row.step.path} | {number_text(number(latency.get('client_requests')), 0)} / "
            f"{number_text(served, 0)} | {number_text(_client_mean(stats, 'ttft_ms'))} / "
            f"{number_text(_server_mean(latency, 'time_to_first_token'))} | "
            f"{number_text(_client_mean(stats, 'itl_ms'), 2)} / "
            f"{number_text(_server_mean(latency, 'inter_token_latency'), 2)} | {said} |"
        )
    return [*lines, ""]


def _region_timings(rows: list[DoneStep | PendingStep]) -> list[str]:
    """Per done step that asked for a region-timing dump: how it was calibrated and its per-region table."""
    steps = [row for row in rows if isinstance(row, DoneStep) and row.region_timings]
    if not steps:
        return []
    lines = [
        "## Region timings",
        "",
        "Per-CTA region timers of the steps that asked the target for a dump (`region_timings.npy` in the step "
        "directory), over the CTAs the grid launched: CTAs that ran each region, median and p99 of their durations.",
        "",
    ]
    for row in steps:
        regions = row.region_timings or {}
        unit = "µs" if regions.get("unit") == "us" else "ticks"
        lines += [f"### {row.step.path}", "", calibration_line(regions), ""]
        table = region_rows(regions)
        if table:
            lines += [f"| region | active CTAs | median {unit} | p99 {unit} | kind |", "|---|---|---|---|---|"]
            lines += ["| " + " | ".join(cell.replace("|", "\\|") for cell in cells) + " |" for cells in table]
            lines.append("")
    return lines


def _plots(root: Path, plots: tuple[Path, ...], notes: tuple[str, ...]) -> list[str]:
    if not plots and not notes:
        return []
    lines = ["## Plots", ""]
    lines += [f"![{p.stem}]({p.relative_to(root)})" for p in plots]
    lines += [f"- not drawn: {n}" for n in notes]
    return [*lines, ""]


def _limitations(results: RunResults) -> list[str]:
    lines = ["## Known limitations", ""]
    if not results.limitations:
        return [*lines, "None found: every step is done, env verified, no trace lost, no incident recorded.", ""]
    return [*lines, *(f"- {x}" if not x.startswith("  ") else x for x in results.limitations), ""]


def _provenance(p: dict) -> list[str]:
    if not p:
        return ["## Provenance", "", "provenance.json is missing or unreadable.", ""]
    host, gpu, versions = section(p, "host"), section(p, "gpu"), section(p, "versions")
    project, plan = section(p, "project"), section(p, "plan")
    devices = gpu.get("devices") if isinstance(gpu.get("devices"), list) else []
    gpu_text = (
        f"{', '.join(map(str, devices))} (driver {gpu.get('driver')})"
        if gpu.get("available")
        else f"none ({gpu.get('reason', 'not recorded')})"
    )
    sha = project.get("sha") or "unknown"
    lines = [
        "## Provenance",
        "",
        f"- host: {host.get('hostname', '?')}, kernel {host.get('kernel', '?')}, {host.get('machine', '?')}, "
        f"{host.get('cpus', '?')} CPUs",
        f"- GPU: {gpu_text}",
        f"- code: {sha}{' (dirty)' if project.get('dirty') else ''}",
        f"- plan: {plan.get('source', '?')} (sha256 {str(plan.get('sha256', '?'))[:16]}…)",
        "- versions: " + ", ".join(f"{k} {v}" for k, v in versions.items() if v),
    ]
    for session, target in section(p, "targets").items():
        target = target if isinstance(target, dict) else {}
        command = target.get("command") if isinstance(target.get("command"), list) else []
        what = target.get("image_id") or target.get("url") or " ".join(map(str, command))[:120]
        digests = target.get("repo_digests") if isinstance(target.get("repo_digests"), list) else []
        lines.append(f"- target {session}: {what}{f' ({digests[0]})' if digests else ''}")
    lines += _datasets(p)
    sessions = p.get("sessions") if isinstance(p.get("sessions"), list) else []
    lines.append(f"- runner sessions: {len(sessions)}")
    return [*lines, ""]


def _datasets(p: dict) -> list[str]:
    """One line per distinct data file the run read: its source, the Hub revision and commit, size and sha256."""
    records = p.get("datasets") if isinstance(p.get("datasets"), list) else []
    by_file: dict[str, list[dict]] = {}
    for record in records:
        if isinstance(record, dict):
            by_file.setdefault(str(record.get("sha256")) + str(record.get("source")), []).append(record)
    lines = []
    for group in by_file.values():
        r = group[0]
        fields = ", ".join(f"{g.get('phase')}.{g.get('field')}" for g in group)
        hub = f", revision {r.get('revision')} (commit {r.get('commit')})" if r.get("repo") else ""
        lines.append(
            f"- data {r.get('name') or r.get('source')} ({fields}): {r.get('source')}{hub}, {r.get('bytes')} bytes, "
            f"sha256 {r.get('sha256')}"
        )
    changed = p.get("datasets_changed") if isinstance(p.get("datasets_changed"), list) else []
    if changed:
        lines.append(
            f"- data changed between runner sessions ({len(changed)} later sessions read other bytes: provenance.json "
            "`datasets_changed`); steps before and after read different files"
        )
    return lines


def render_summary(
    results: RunResults,
    gates: GateReport,
    steps: list[DoneStep | PendingStep],
    plots: tuple[Path, ...] = (),
    notes: tuple[str, ...] = (),
) -> str:
    """The whole summary.md."""
    plan = results.plan
    head = [
        f"# Soak summary: {results.run_id}",
        "",
        f"Plan `{plan.name}`{f' ({plan.description})' if plan.description else ''}. Status: **{results.status}**. "
        f"Started {_when(results.started_at)}, ended {_when(results.ended_at)}.",
        "",
    ]
    tail = [
        "TTFT, TPOT and output tok/s follow vLLM's `bench serve` definitions (docs/architecture.md); "
        "raw per-request records are in `arms/<arm>/<mode>/<phase>/<rep>/requests.jsonl`. "
        f"Regenerate with `gb10-console report {results.root}`.",
        "",
    ]
    body = [
        *_headline(results, gates), *_gates(gates), *_reproduction(gates), *_arms(results), *_steps(steps),
        *_latency_check(steps), *_profiles(steps), *_region_timings(steps), *_plots(results.root, plots, notes),
        *_limitations(results), *_provenance(results.provenance),
    ]  # fmt: skip
    return "\n".join(head + body + tail)


def summary_model(
    results: RunResults, gates: GateReport, steps: list[DoneStep | PendingStep], plots: tuple[Path, ...],
    registry: Registry,
) -> Summary:  # fmt: skip
    """The machine-readable summary (summary.json): per-arm rows, steps, gates, verdicts, limitations, plots."""
    arms = []
    for arm in results.arms:
        primary = [p for p in arm.phases.values() if p.mode == "primary"]
        correct, n = gsm8k_correct(results, arm)
        arms.append(
            ArmSummary(
                arm=arm.name,
                arm_env=effective_arm_env(arm),
                env_status=arm.env_status,
                env_where=arm.env_where,
                steps_done=sum(p.reps_done for p in primary),
                steps_total=sum(p.reps_total for p in primary),
                stats=arm.primary,
                paused_s=arm.primary_paused_s[0],
                paused_excluded_s=arm.primary_paused_s[1],
                verdict=gates.verdicts.get(arm.name),
                gsm8k_correct=correct,
                gsm8k_questions=n,
            )
        )
    return Summary(
        run_id=results.run_id,
        plan=results.plan.name,
        status=results.status,
        baseline=results.baseline,
        deciding_phases=asdict(results.deciding_phases()),
        arms=tuple(arms),
        steps=tuple(steps),
        gates=gates.gates,
        verdicts=dict(gates.verdicts),
        reproduction_rows=tuple(gates.reproduction_rows),
        prior_run=gates.prior_run,
        plan_differences=tuple(gates.plan_differences),
        limitations=tuple(results.limitations),
        plots=tuple(str(p.relative_to(results.root)) for p in plots),
        registries=RegistrySource(directory=str(registry.directory), errors=tuple(registry.errors)),
    )


def write_report(root: Path, prior: Path | None = None, plots: bool = True) -> ReportOutcome:
    """Regenerate summary.md, summary.json and plots/*.png of the run at `root` (reproduction vs `prior`).

    Without `prior`, the plan's `gates.reproduce_from` is used when set. Raises RunDirError or
    ConfigFileError for a directory that is not a readable run.
    """
    results = load_run_results(root)
    if prior is None and results.gates.reproduce_from:
        prior = results.resolve(results.gates.reproduce_from)
    prior_results = None
    if prior is not None:
        try:
            prior_results = load_run_results(prior)
        except RunDirError as exc:
            raise RunDirError(f"the prior run to reproduce: {exc}") from None
    registry = registry_for(results)
    gates = evaluate_gates(results, registry, prior_results)
    written: tuple[Path, ...] = ()
    notes: tuple[str, ...] = ()
    if plots:
        from runners.report.plots import write_plots  # matplotlib loads only when plots are drawn

        plot_set = write_plots(results, results.root / PLOTS_DIR)
        written, notes = plot_set.written, plot_set.skipped
    steps = step_rows(results)
    run = RunDir(results.root)
    write_atomic(run.summary_md, render_summary(results, gates, steps, written, notes))
    write_summary(run.summary_json, summary_model(results, gates, steps, written, registry))
    return ReportOutcome(run.summary_md, run.summary_json, written, notes, results, gates)
