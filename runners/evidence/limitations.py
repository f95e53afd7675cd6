"""Known limitations of a run's evidence, in words a reviewer acts on, from the run directory alone.

Each line says what is missing or suspect and where to look: steps not done, lost profiler
traces, effective env that was not verified, unfinished attempts kept aside, token counts taken
from chunks, server metrics that could not be scraped or steps too short to sample them, prompts not
checked in tokens, memory actions and OOM kills, restarts,
a /health that failed while the target was up, steps whose dispatch the operator paused or a suspected stall held, steps
whose client latency disagrees with the server's own histograms or could not be cross-checked,
region-timing dumps not captured, left in ticks or off the profiler's mean.
"""

from __future__ import annotations

from collections import Counter

from runners.evidence.measurement import step_measurement
from runners.evidence.region_table import CAPTURED, section_status
from runners.evidence.step_files import number, phase_record, recorded_pause, section
from runners.plan.model import Plan
from runners.plan.steps import StepKey
from runners.replay.measurement_check import DISTORTED, UNCHECKED
from runners.run.event_log import read_event_log
from runners.run.event_types import (
    EngineStalled,
    GuardLost,
    RunDirUnwritable,
    ServeHealth,
    ServeOom,
    ServeRestarting,
    StepFailed,
    WatchdogAction,
)
from runners.run.files import read_json
from runners.run.incident_slot import incident_text
from runners.run.rundir import RunDir


def _steps(run: RunDir, plan: Plan, events: list[dict]) -> list[str]:
    steps = plan.steps()
    missing = [s for s in steps if not run.is_done(s)]
    if not missing:
        return []
    failed: dict[str, str] = {}
    for e in events:
        if e.get("type") == StepFailed.TYPE and isinstance(e.get("step"), dict):
            try:
                failed[StepKey.from_dict(e["step"]).path] = str(e.get("reason", ""))
            except (KeyError, TypeError, ValueError):
                continue
    out = [f"{len(missing)} of {len(steps)} steps are not done; their arms' numbers cover fewer repetitions"]
    for step in missing[:10]:
        why = failed.get(step.path)
        out.append(f"  - {step.path}: " + (f"failed: {why}" if why else "not run"))
    if len(missing) > 10:
        out.append(f"  - ... and {len(missing) - 10} more (events.jsonl has every step_failed)")
    return out


def _profiles(run: RunDir, plan: Plan) -> list[str]:
    out = []
    for step in plan.steps():
        if not plan.phase(step.phase).profile:
            continue
        profile = section(phase_record(run, step), "profile")
        status = profile.get("status") if profile else None
        if status == "recovered after kill":
            out.append(f"trace recovered after kill: {step.path}: {profile.get('reason')}")
        elif profile and status != "captured":
            out.append(f"trace lost: {step.path}: {profile.get('reason') or status}")
    return out


def _env(run: RunDir, plan: Plan) -> list[str]:
    out = []
    for arm in plan.arms:
        try:
            eff = read_json(run.effective_env_path(arm.name))
        except (OSError, ValueError):
            continue
        if not isinstance(eff, dict):
            continue
        mismatches = eff.get("mismatches")
        if mismatches:
            listed = mismatches if isinstance(mismatches, list) else [mismatches]
            out.append(f"env mismatch: arm {arm.name}: " + "; ".join(map(str, listed)))
        elif eff.get("status") == "unverified":
            out.append(f"env unverified: arm {arm.name}: {eff.get('reason')}; its kernel variant is taken on trust, "
                       "so it gets no verdict")  # fmt: skip
        elif "status" in eff:
            continue  # verified (by a process of the target, or nothing to verify)
        elif eff.get("reported") is None:
            out.append(
                f"env unverified: arm {arm.name}: the target does not report /debug/config, so its kernel "
                "variant is taken on trust"
            )
        elif eff.get("unverified_keys"):
            unverified = eff["unverified_keys"]
            keys = ", ".join(map(str, unverified if isinstance(unverified, list) else [unverified]))
            out.append(f"env unverified: arm {arm.name}: the target does not report {keys}")
    return out


def _attempts(run: RunDir) -> list[str]:
    arms_dir = run.root / "arms"
    kept = sorted(arms_dir.rglob("*.incomplete-*")) if arms_dir.is_dir() else []
    if not kept:
        return []
    first = kept[0].relative_to(run.root)
    return [f"{len(kept)} unfinished attempt(s) kept aside and not counted (e.g. {first})"]


def _region_timings(run: RunDir, plan: Plan) -> list[str]:
    """Done steps that asked for a region-timing dump and have none, have it in ticks, or failed its cross-check."""
    out = []
    for step in plan.steps():
        if plan.phase(step.phase).region_timings is None or not run.is_done(step):
            continue
        regions = section(phase_record(run, step), "region_timings")
        if not regions:
            continue
        status, calibration = section_status(regions), section(regions, "calibration")
        if status != CAPTURED:
            out.append(f"region timings {status}: {step.path}: {regions.get('reason') or 'no reason recorded'}")
        elif regions.get("unit") != "us" or calibration.get("flagged"):
            out.append(f"region timings of {step.path}: {calibration.get('note') or 'in ticks, not µs'}")
    return out


def _paused(run: RunDir, plan: Plan) -> list[str]:
    """Done steps whose dispatch was paused: what was left out of their figures and what could not be."""
    out = []
    for step in plan.steps():
        record = phase_record(run, step) if run.is_done(step) else {}
        pause = recorded_pause(record)
        if not pause.paused_s:
            continue
        if not section(record, "pause"):  # written before pauses were accounted
            out.append(f"{step.path}: dispatch was paused for {pause.paused_s:.1f} s; its wall time includes "
                       "the pause (recorded before pauses were left out), so its wall criterion is judged "
                       "with and without it")  # fmt: skip
            continue
        said = f"{step.path}: dispatch was paused for {pause.paused_s:.1f} s: {pause.idle_s:.1f} s with nothing in "
        said += "flight is left out of its wall time"
        if pause.in_flight_s:
            said += (f"; {pause.in_flight_s:.1f} s with requests in flight stays in it (an unpaused step could have "
                     "been that much shorter: the wall criterion is judged with and without it)")  # fmt: skip
        if pause.requests:
            said += f"; {pause.requests} request(s) in flight during the pause are left out of its latency figures"
        out.append(said)
    return out


def _stall_holds(run: RunDir, plan: Plan) -> list[str]:
    """Done steps whose dispatch a suspected stall held: the engine went silent and recovered inside the step."""
    held = []
    for step in plan.steps():
        hold = section(phase_record(run, step), "stall_hold") if run.is_done(step) else {}
        count, seconds = number(hold.get("count")), number(hold.get("held_s"))
        if count:
            held.append(f"{step.path} ({int(count)}x, {seconds or 0:.1f} s)")
    if not held:
        return []
    listed = ", ".join(held[:5]) + (f" and {len(held) - 5} more" if len(held) > 5 else "")
    return [f"the engine went silent with requests in flight and recovered in {listed}: dispatch was held meanwhile "
            "and their wall time and latencies include it (phase.json `stall_hold`)"]  # fmt: skip


def _measurements(run: RunDir, plan: Plan) -> list[str]:
    """Done steps whose client latency is distorted, and unchecked ones grouped by why."""
    out = []
    unchecked: dict[str, list[str]] = {}
    for step in plan.steps():
        if not run.is_done(step):
            continue
        check = step_measurement(step.path, phase_record(run, step)).check
        if check.status == DISTORTED:
            out.append(f"client-side distortion: {step.path}: {check.reason}")
        elif check.status == UNCHECKED:
            unchecked.setdefault(check.reason or "no reason recorded", []).append(step.path)
    for reason, paths in unchecked.items():
        listed = ", ".join(paths[:3]) + (f" and {len(paths) - 3} more" if len(paths) > 3 else "")
        out.append(f"client latency not cross-checked with the server's in {len(paths)} step(s) ({listed}): {reason}")
    return out


def _request_details(run: RunDir, plan: Plan) -> list[str]:
    chunks = scrape_failures = absent = not_sampled = 0
    unchecked: list[str] = []
    for step in plan.steps():
        if not run.is_done(step):
            continue
        record = phase_record(run, step)
        chunks += int(number(section(record, "stats").get("output_tokens_from_chunks")) or 0)
        if isinstance(record.get("server_metrics"), dict):
            metrics = section(record, "server_metrics")
            scrape_failures += int(number(metrics.get("scrapes_failed")) or 0)
            absent += not number(metrics.get("scrapes_ok"))
            not_sampled += bool(metrics.get("not_sampled"))
        filtered = section(record, "prompt_filter")
        if filtered.get("tokens_checked") is False:
            unchecked.append(f"{step.path}: {filtered.get('tokens_not_checked_reason')}")
    out = []
    if chunks:
        out.append(
            f"{chunks} request(s) had no `usage` in the stream: their output tokens were counted from chunks, "
            "which undercounts when a chunk carries several tokens"
        )
    if scrape_failures:
        out.append(f"{scrape_failures} /metrics scrape(s) failed; server-side numbers have gaps (phase.json)")
    if absent:
        out.append(f"{absent} step(s) have no server metrics at all")
    if not_sampled:
        out.append(
            f"{not_sampled} step(s) were too short for their /metrics interval: running, waiting and KV usage "
            "are not sampled there (phase.json `server_metrics.not_sampled`)"
        )
    if unchecked:
        out.append(
            f"{len(unchecked)} step(s) sent prompts not checked against max_model_len in tokens "
            f"(a prompt too long fails with HTTP 400), e.g. {unchecked[0]}"
        )
    return out


def _incidents(events: list[dict]) -> list[str]:
    counts = Counter(e.get("type") for e in events)
    out = []
    actions = Counter(str(e.get("action")) for e in events if e.get("type") == WatchdogAction.TYPE)
    if actions:
        what = ", ".join(f"{n} {a}" for a, n in sorted(actions.items()))
        out.append(f"the memory watchdog acted ({what}); steps it cut short are not done (watchdog.jsonl)")
    if counts[ServeOom.TYPE]:
        out.append(f"{counts[ServeOom.TYPE]} OOM kill report(s) in the serve target (events.jsonl serve_oom)")
    if counts[EngineStalled.TYPE]:
        out.append(f"{counts[EngineStalled.TYPE]} engine stall(s): the target was killed and its step failed "
                   "(events.jsonl engine_stalled, the step's phase.json `stall`)")  # fmt: skip
    if counts[ServeRestarting.TYPE]:
        out.append(f"the serve target was restarted {counts[ServeRestarting.TYPE]} time(s) mid-session")
    if counts[GuardLost.TYPE]:
        out.append("the memory guard was lost; the runner failed closed (events.jsonl guard_lost)")
    for e in events:
        if e.get("type") == RunDirUnwritable.TYPE:
            out.append(f"{incident_text({'reason': e.get('reason'), 'step': e.get('step')})}; the runner stopped "
                       "there and a later session resumed (events.jsonl run_dir_unwritable)")  # fmt: skip
    out.extend(_unhealthy(events))
    return out


def _unhealthy(events: list[dict]) -> list[str]:
    """Steps during which the serve target stayed up but its /health failed: a stall may be in their numbers."""
    paths: list[str] = []
    for e in events:
        if e.get("type") == ServeHealth.TYPE and not e.get("healthy") and isinstance(e.get("step"), dict):
            try:
                path = StepKey.from_dict(e["step"]).path
            except (KeyError, TypeError, ValueError):
                continue
            if path not in paths:
                paths.append(path)
    if not paths:
        return []
    listed = ", ".join(paths[:5]) + (f" and {len(paths) - 5} more" if len(paths) > 5 else "")
    return [f"the serve target's /health failed while it was up during {listed}; their numbers may include "
            "a stall (events.jsonl serve_health)"]  # fmt: skip


def _event_log(problems: tuple[str, ...]) -> list[str]:
    """An incomplete events.jsonl: what shows it, and that the incidents below may not be all there were."""
    if not problems:
        return []
    head = "the event log (events.jsonl) is incomplete: incidents it lost are not listed here"
    return [head, *(f"  - {p}" for p in problems)]


def known_limitations(run: RunDir, plan: Plan) -> list[str]:
    """Every known limitation of the run's evidence, most consequential first; empty when there is none."""
    try:
        log = read_event_log(run, plan.steps())
    except OSError as exc:
        return [f"events.jsonl cannot be read ({exc}): incidents are not listed", *_env(run, plan)]
    events = log.events
    return [
        *_event_log(log.problems),
        *_steps(run, plan, events),
        *_env(run, plan),
        *_profiles(run, plan),
        *_region_timings(run, plan),
        *_incidents(events),
        *_paused(run, plan),
        *_stall_holds(run, plan),
        *_measurements(run, plan),
        *_attempts(run),
        *_request_details(run, plan),
    ]
