"""What each vLLM process says it runs: the reports gb10-vllm-plugin writes into the arm's env directory.

The plugin (vllm_plugin/) runs in vLLM's API server, EngineCore and workers; each writes
`<env dir>/reports/<pid>.json` with its roles and, for every key of the arm's ENV sentinel, the value
(or, for a secret, only its sha256) the process has after the sentinel was applied. `judge_reports`
decides from them, with no I/O: an arm is verified only where an EngineCore or worker process (where
the kernels run) reports every expected value; any reporting process with another value is a mismatch;
no such process is "unverified", with the reason.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass, field
from pathlib import Path

import orjson

from runners.run.redact import NO_PLAN, EnvPolicy, redact_env

REPORTS_DIR = "reports"
KERNEL_ROLES = ("EngineCore", "worker")  # where the arm's kernels run
PLUGIN_HINT = (
    "install gb10-console's vLLM plugin into the target's Python environment "
    "(`pip install ./vllm_plugin` from the gb10-console checkout; in a Docker image, at build time)"
)


@dataclass(frozen=True)
class ProcessReport:
    """One vLLM process's report: who it is and what it has for each of the arm's keys."""

    pid: int
    roles: tuple[str, ...]
    title: str | None = None
    ppid: int | None = None
    vllm_version: str | None = None
    sentinel_error: str | None = None
    keys: dict[str, dict] = field(default_factory=dict)  # key -> {"value", "sha256", "source"}
    copy: str | None = None  # the plugin copy that wrote it: "installed", or "injected" by the Docker runtime

    def describe(self) -> str:
        """`EngineCore pid 4242 (vLLM 0.32.0)`: how events and the console name the process."""
        role = "+".join(self.roles) or self.title or "vLLM process"
        version = f" (vLLM {self.vllm_version})" if self.vllm_version else ""
        return f"{role} pid {self.pid}{version}"

    def as_dict(self) -> dict:
        """JSON form for effective.json: every value through `redact_env` (the run directory's policy)."""
        values = {k: str(v["value"]) for k, v in self.keys.items() if v.get("value") is not None}
        shown = redact_env(values) or {}  # a key the plugin reported without a value (a secret's) stays None
        return {
            "pid": self.pid,
            "ppid": self.ppid,
            "roles": list(self.roles),
            "title": self.title,
            "vllm_version": self.vllm_version,
            "sentinel_error": self.sentinel_error,
            "plugin_copy": self.copy,
            "keys": {k: {"value": shown.get(k), "source": v.get("source")} for k, v in self.keys.items()},
        }


@dataclass(frozen=True)
class EnvProof:
    """The verdict on an arm's env from the process reports: verified (by which process), mismatch or unverified."""

    status: str  # "verified" | "mismatch" | "unverified"
    reason: str = ""
    where: str | None = None  # the process that verified it, or the first that mismatched
    mismatches: tuple[str, ...] = ()
    reported: dict[str, str] | None = None  # what the verifying process runs (secrets as in its report)


def _report(data: object) -> ProcessReport | None:
    if not isinstance(data, dict) or not isinstance(data.get("pid"), int):
        return None
    keys = data.get("keys")
    roles = data.get("roles")
    return ProcessReport(
        pid=data["pid"],
        roles=tuple(str(r) for r in roles) if isinstance(roles, list) else (),
        title=data.get("title") if isinstance(data.get("title"), str) else None,
        ppid=data.get("ppid") if isinstance(data.get("ppid"), int) else None,
        vllm_version=data.get("vllm_version") if isinstance(data.get("vllm_version"), str) else None,
        sentinel_error=data.get("sentinel_error") if isinstance(data.get("sentinel_error"), str) else None,
        keys={str(k): v for k, v in keys.items() if isinstance(v, dict)} if isinstance(keys, dict) else {},
        copy=data.get("copy") if isinstance(data.get("copy"), str) else None,
    )


def read_reports(env_dir: Path) -> tuple[list[ProcessReport], list[str]]:
    """The process reports under `env_dir/reports`, by pid, and a note for each file that cannot be read."""
    folder = env_dir / REPORTS_DIR
    reports, problems = [], []
    try:
        names = sorted(p for p in os.listdir(folder) if p.endswith(".json"))
    except FileNotFoundError:
        return [], []
    except OSError as exc:
        return [], [f"{folder}: cannot be listed: {exc}"]
    for name in names:
        path = folder / name
        try:
            report = _report(orjson.loads(path.read_bytes()))
        except (OSError, orjson.JSONDecodeError) as exc:
            problems.append(f"{path}: cannot be read: {exc}")
            continue
        if report is None:
            problems.append(f"{path}: not a gb10-vllm-plugin report (no pid)")
        else:
            reports.append(report)
    return sorted(reports, key=lambda r: r.pid), problems


def clear_reports(env_dir: Path) -> None:
    """Remove the reports of an earlier target of this arm, so only this start's processes are read."""
    folder = env_dir / REPORTS_DIR
    if folder.is_dir():
        for path in folder.iterdir():
            if path.is_file():
                path.unlink(missing_ok=True)


def _sha(value: str) -> str:
    return hashlib.sha256(value.encode()).hexdigest()


def _differences(expected: dict[str, str], report: ProcessReport, policy: EnvPolicy) -> list[str]:
    """What the process runs other than the arm asked for, each value as `policy` shows it."""
    out = []
    for key, want in expected.items():
        got = report.keys.get(key)
        if got is None:
            out.append(f"{key}: not in the sentinel this process read")
        elif got.get("sha256") is None:
            out.append(f"{key}: want {policy.value(key, want)!r}, the process has none")
        elif got.get("sha256") != _sha(want):
            runs = got.get("value")
            shown = policy.value(key, runs) if isinstance(runs, str) else f"sha256 {str(got.get('sha256'))[:12]}"
            out.append(f"{key}: want {policy.value(key, want)!r}, the process runs {shown!r}")
    return out


def _values(report: ProcessReport) -> dict[str, str]:
    return {k: ("***redacted***" if v.get("value") is None and v.get("sha256") else str(v.get("value")))
            for k, v in report.keys.items()}  # fmt: skip


def judge_reports(expected: dict[str, str], reports: list[ProcessReport], policy: EnvPolicy = NO_PLAN) -> EnvProof:
    """Verified, mismatch or unverified, from the process reports (rules in the module docstring); values in its
    reasons as `policy` shows them."""
    kernel_side = [r for r in reports if any(role in KERNEL_ROLES for role in r.roles)]
    for report in kernel_side + [r for r in reports if r not in kernel_side]:  # name a kernel process first
        if report.sentinel_error:
            continue  # judged below as a process that could not read the arm's env
        wrong = _differences(expected, report, policy)
        if wrong:
            return EnvProof("mismatch", "; ".join(wrong), report.describe(), tuple(wrong), _values(report))
    readable = [r for r in kernel_side if not r.sentinel_error]
    if readable:
        engine = next((r for r in readable if "EngineCore" in r.roles), readable[0])
        return EnvProof("verified", "", engine.describe(), (), _values(engine))
    if kernel_side:
        first = kernel_side[0]
        return EnvProof("unverified", f"{first.describe()} could not read the arm's ENV: {first.sentinel_error}")
    if reports:
        seen = ", ".join(r.describe() for r in reports)
        return EnvProof("unverified", f"no EngineCore or worker process reported (only {seen})")
    return EnvProof("unverified", f"no vLLM process reported its env: {PLUGIN_HINT}")
