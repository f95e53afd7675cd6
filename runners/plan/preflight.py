"""Pre-flight warnings about a plan's vLLM profiler settings: what would lose a profiled step's trace.

Warnings, never failures: `gb10-console validate` prints them and the runner emits each as a
`preflight_warning` event when a session starts. Only a target whose command is recognisably vLLM (or
carries `--profiler-config`) is judged, and only when some phase has `profile = true`.

The stop deadline. vLLM's torch profiler writes its trace inside `/stop_profile`, and how long that takes
grows with what was recorded: on a GB10 (issue 20) a stop with stack tracing on (vLLM's default) took 57 s
and the next one passed the 60 s default `profile_stop_timeout_s`, so the runner killed the target and the
trace was lost; without stacks and with `max_iterations = 200` a stop took 4.5 s. On this project's CPU
machine a tiny model's stop took 26.6 s with stacks and 11 s without. A deadline under `SHORT_STOP_S`
(120 s, twice the slowest stop seen with stacks) is therefore called short when stacks are on or the trace
has no iteration bound; a longer deadline is taken as a deliberate choice.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from runners.plan.env_reach import env_warnings
from runners.plan.model import Plan
from runners.plan.vllm_profiler import ProfilerConfigProblem, VllmProfilerSettings, target_profiler_settings

SHORT_STOP_S = 120.0
PROFILE_DIR = "{profile_dir}"
BOUNDED_ITERATIONS = 200
RECOMMENDED = (
    f'--profiler-config \'{{"profiler": "torch", "torch_profiler_dir": "{PROFILE_DIR}", '
    f'"torch_profiler_with_stack": false, "max_iterations": {BOUNDED_ITERATIONS}}}\''
)


@dataclass(frozen=True)
class PreflightFinding:
    """One pre-flight warning: `topic` (env, profiler_config, profiler_env, profiler_missing, profiler_dir,
    profiler_stop_timeout) and a message that says where the setting is and what to set instead."""

    topic: str
    message: str


def preflight_warnings(plan: Plan) -> list[PreflightFinding]:
    """The plan's pre-flight warnings in a stable order: env that cannot prove the arm (topic `env`), then the
    profiler's (none when no phase is profiled or the target is not vLLM)."""
    return [PreflightFinding("env", message) for message in env_warnings(plan)] + _profiler_warnings(plan)


def _profiler_warnings(plan: Plan) -> list[PreflightFinding]:
    profiled = [p for p in plan.phases if p.profile]
    if not profiled:
        return []
    settings = target_profiler_settings(plan.serve, {arm.name: arm.env for arm in plan.arms})
    if settings is None:
        return []
    names = ", ".join(p.name for p in profiled)
    if isinstance(settings, ProfilerConfigProblem):
        return [PreflightFinding("profiler_config", f"{settings}; the profiled phases ({names}) get no trace")]
    out = [
        PreflightFinding(
            "profiler_config",
            f"{where}: vLLM 0.32 drops this --profiler-config JSON because dotted --profiler-config.KEY flags are "
            "given too (they replace it whole); give every key in one form",
        )
        for where in settings.dropped
    ]
    out += [
        PreflightFinding(
            "profiler_env",
            f"{where}: vLLM 0.32 reads no VLLM_TORCH_PROFILER_* variable; give the setting in --profiler-config",
        )
        for where in settings.ignored_env
    ]
    if settings.profiler.value is None:
        if settings.configured or settings.config_file is None:  # a --config FILE may configure it: not read here
            out.append(
                PreflightFinding(
                    "profiler_missing",
                    f"phases {names} are profiled but the vLLM command sets no profiler ({settings.profiler.source}): "
                    f"vLLM then serves no /start_profile (404) and records nothing; add {RECOMMENDED}",
                )
            )
        return out
    if settings.profiler.value != "torch":
        return out
    directory = settings.torch_profiler_dir
    if directory.value.rstrip("/") != PROFILE_DIR:
        out.append(
            PreflightFinding(
                "profiler_dir",
                f"torch_profiler_dir is {directory.value!r} ({directory.source}): traces written there are not "
                f"collected into the run; set {_setting(settings, 'torch_profiler_dir', PROFILE_DIR)} "
                "(the runner fills it with a directory it owns)",
            )
        )
    for phase in profiled:
        finding = _stop_timeout(settings, phase.name, phase.profile_stop_timeout_s)
        if finding is not None:
            out.append(finding)
    return out


def _stop_timeout(settings: VllmProfilerSettings, phase: str, timeout_s: float) -> PreflightFinding | None:
    """A warning when this phase's stop deadline is short for a trace with stacks or without an iteration bound."""
    if timeout_s >= SHORT_STOP_S:
        return None
    causes, fixes = [], []
    if settings.with_stack.value:
        causes.append(f"stack tracing on (torch_profiler_with_stack, {settings.with_stack.source})")
        fixes.append(_setting(settings, "torch_profiler_with_stack", False))
    if settings.max_iterations.value == 0:
        causes.append(f"no iteration bound (max_iterations 0, {settings.max_iterations.source})")
        fixes.append(_setting(settings, "max_iterations", BOUNDED_ITERATIONS))
    if not causes:
        return None
    return PreflightFinding(
        "profiler_stop_timeout",
        f"phase {phase}: profile_stop_timeout_s = {timeout_s:g} s with {' and '.join(causes)}: the stop can outrun "
        f"its deadline (stacks made one take 57 s on a GB10), and then the target is killed and the trace lost; "
        f"set {' and '.join(fixes)}, or profile_stop_timeout_s >= {SHORT_STOP_S:g}",
    )


def _setting(settings: VllmProfilerSettings, key: str, value: object) -> str:
    """How to write `key = value` in the form the command already uses: a dotted flag next to dotted flags,
    else a key in its JSON (a dotted flag added to a JSON form would make vLLM drop the JSON)."""
    if settings.form == "dotted":
        return f"--profiler-config.{key}={value if isinstance(value, str) else json.dumps(value)}"
    return f"{json.dumps(key)}: {json.dumps(value)} in the --profiler-config JSON"
