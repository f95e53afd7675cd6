"""Pre-flight on this host, before the first serve target starts: what would fail later, or hurt the host.

`validate`, `run`, `demo` and `--resume` call `host_preflight` before they write anything. Errors refuse
the plan; `force` turns the refusals that are a judgement (a known OOM) into warnings, never the ones
that are certain (floors no memory can clear).
- the floors against MemTotal and MemAvailable (`runners/watchdog/host_fit.py`);
- the host's known-OOM record (`runners/evidence/oom_record.py`): an arm whose target, with the same
  identity and env, the guard or the kernel already killed on this host.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from runners.evidence.oom_record import known_oom_matches, record_path
from runners.host.meminfo import read_meminfo
from runners.plan.load import LoadedPlan
from runners.watchdog.host_fit import floor_fit

FORCE_HINT = "pass --force to run it anyway"


@dataclass
class HostPreflight:
    """`errors` refuse the plan; `warnings` are printed (and the runner emits its own events)."""

    errors: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)


def host_preflight(loaded: LoadedPlan, force: bool = False) -> HostPreflight:
    """Every pre-flight finding for `loaded` on this host; `force` downgrades the known-OOM refusal."""
    out = HostPreflight()
    fit = floor_fit(loaded.plan.watchdog, read_meminfo())
    out.errors += fit.errors
    out.warnings += fit.warnings
    try:
        matches = known_oom_matches(loaded)
    except OSError as exc:
        out.warnings.append(f"the known-OOM record {record_path()} cannot be read ({exc.strerror or exc}): not checked")
        matches = []
    for match in matches:
        if force:
            out.warnings.append(f"{match.message()} (--force: running it anyway)")
        else:
            out.errors.append(f"{match.message()}; {FORCE_HINT}")
    return out
