"""Does the target run the arm's env? Compared with what it reports (`/debug/config`), before anything is measured.

vLLM's EngineCore once dropped `docker -e` variables, so an arm silently ran the default kernel: a
mismatch fails the arm; a target that reports nothing is recorded as unverified.
"""

from __future__ import annotations

from runners.run.event_types import EnvMismatch, EnvUnverified, EnvVerified, KernelChecksFailed
from runners.run.events import EventLog
from runners.run.files import write_json_atomic
from runners.run.redact import redact_env
from runners.run.rundir import RunDir
from runners.serve.readiness import env_mismatches, fetch_target_report
from runners.serve.runtime import ServeRuntime


async def verify_env(run: RunDir, events: EventLog, arm: str, mode: str, expected: dict[str, str],
                     runtime: ServeRuntime) -> str | None:  # fmt: skip
    """Write effective.json and the env events for `arm`; a reason to fail the arm when the env differs."""
    report = await fetch_target_report(runtime.base_url)
    reported = report.env
    mismatches = env_mismatches(expected, reported or {})
    unverified = sorted(k for k in expected if reported is None or k not in reported)
    write_json_atomic(
        run.effective_env_path(arm),
        {
            "arm": arm,
            "mode": mode,
            "expected": redact_env(expected),
            "reported": redact_env(reported),
            "verified": reported is not None and not mismatches,
            "unverified_keys": unverified,
            "mismatches": mismatches,
            "kernel_checks": report.kernel_checks,
        },
    )
    failed_checks = [c for c in report.kernel_checks or [] if c.get("passed") is not True]
    if failed_checks:  # measured anyway: the kernel-correctness gate rejects the arm in the report
        events.emit(KernelChecksFailed(arm, mode, failed_checks))
    if reported is None:
        events.emit(EnvUnverified(arm, "the target does not report /debug/config"))
    elif mismatches:
        events.emit(EnvMismatch(arm, mismatches, redact_env(reported)))
        return "the target does not run the arm's env: " + "; ".join(mismatches)
    else:
        events.emit(EnvVerified(arm, redact_env(reported), unverified))
    return None
