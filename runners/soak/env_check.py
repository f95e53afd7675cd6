"""Does the target run the arm's env? Checked after readiness, before anything is measured.

vLLM's EngineCore once dropped `docker -e` variables, so an arm silently ran the default kernel. Two
witnesses, the stronger first:
- gb10-vllm-plugin's reports (runners/serve/env_reports.py): an EngineCore or worker process that
  loaded the arm's ENV sentinel and says what it runs; `env_verified` names that process;
- the target's `/debug/config` (the embedded engine: one process that runs the kernels).
A mismatch fails the arm. A target that reports nothing leaves the env "unverified", and the env gate
gives such an arm no verdict. An arm with no env has nothing to verify.
"""

from __future__ import annotations

import asyncio

from runners.evidence.results import load_plan_copy
from runners.run.event_types import EnvMismatch, EnvUnverified, EnvVerified, KernelChecksFailed
from runners.run.events import EventLog
from runners.run.files import write_json_atomic
from runners.run.redact import EnvPolicy, env_policy
from runners.run.rundir import RunDir
from runners.serve.env_reports import EnvProof, ProcessReport, judge_reports, read_reports
from runners.serve.readiness import TargetReport, env_mismatches, fetch_target_report
from runners.serve.runtime import ServeRuntime

NOTHING_TO_VERIFY = "the arm's env is empty: nothing to verify"


def prove_env(expected: dict[str, str], report: TargetReport, runtime: ServeRuntime,
              reports: list[ProcessReport], policy: EnvPolicy) -> EnvProof:  # fmt: skip
    """The verdict on the env from the plugin's process `reports`, else the target's /debug/config `report`
    (values in its reasons as `policy` shows them)."""
    if reports:
        return judge_reports(expected, reports, policy)
    reported = report.env
    if reported is not None:
        mismatches = env_mismatches(expected, reported, policy)
        if mismatches:
            return EnvProof("mismatch", "; ".join(mismatches), "the target's /debug/config", tuple(mismatches),
                            reported)  # fmt: skip
        missing = sorted(k for k in expected if k not in reported)
        if missing:
            why = f"the target's /debug/config does not report {', '.join(missing)}"
            return EnvProof("unverified", why, None, (), reported)
        return EnvProof("verified", "", "the target's /debug/config", (), reported)
    if not expected:
        return EnvProof("verified", NOTHING_TO_VERIFY, None, (), {})
    if runtime.env_dir is None:
        why = "the target is not started by gb10-console (no ENV sentinel reaches it) and has no /debug/config"
    else:
        why = judge_reports(expected, [], policy).reason
    return EnvProof("unverified", why)


async def verify_env(run: RunDir, events: EventLog, arm: str, mode: str, expected: dict[str, str],
                     runtime: ServeRuntime) -> str | None:  # fmt: skip
    """Write effective.json and the env events for `arm`; a reason to fail the arm when the env differs."""
    policy = env_policy(load_plan_copy(run))  # what may be shown of each value: runners/run/redact.py
    report = await fetch_target_report(runtime.base_url)
    reports, problems = await asyncio.to_thread(read_reports, runtime.env_dir) if runtime.env_dir else ([], [])
    proof = prove_env(expected, report, runtime, reports, policy)
    write_json_atomic(
        run.effective_env_path(arm),
        {
            "arm": arm,
            "mode": mode,
            "expected": policy.env(expected),
            "reported": policy.env(proof.reported),
            "status": proof.status,
            "verified": proof.status == "verified",
            "verified_by": proof.where if proof.status == "verified" else None,
            "reason": proof.reason,
            "unverified_keys": sorted(expected) if proof.status == "unverified" else [],
            "mismatches": list(proof.mismatches),
            "processes": [_shown_process(r.as_dict(), policy) for r in reports],
            "report_problems": problems,
            "kernel_checks": report.kernel_checks,
        },
    )
    failed_checks = [c for c in report.kernel_checks or [] if c.get("passed") is not True]
    if failed_checks:  # measured anyway: the kernel-correctness gate rejects the arm in the report
        events.emit(KernelChecksFailed(arm, mode, failed_checks))
    if proof.status == "mismatch":
        events.emit(EnvMismatch(arm, list(proof.mismatches), policy.env(proof.reported) or {}, proof.where))
        return f"the target does not run the arm's env ({proof.where}): " + "; ".join(proof.mismatches)
    if proof.status == "unverified":
        events.emit(EnvUnverified(arm, proof.reason))
    else:
        events.emit(EnvVerified(arm, policy.env(proof.reported) or {}, [], proof.where))
    return None


def _shown_process(process: dict, policy: EnvPolicy) -> dict:
    """A process report's JSON form with each key's value as `policy` shows it."""
    keys = process.get("keys")
    if not isinstance(keys, dict):
        return process
    shown = {k: {**v, "value": policy.value(k, v.get("value"))} if isinstance(v, dict) else v for k, v in keys.items()}
    return {**process, "keys": shown}
