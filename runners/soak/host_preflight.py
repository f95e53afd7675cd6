"""Pre-flight on this host, before the first serve target starts: what would fail later, or hurt the host.

`validate`, `run`, `demo` and `--resume` call `host_preflight` before they write anything. Errors refuse
the plan; `force` turns the refusals that are a judgement (a known OOM) into warnings, never the ones
that are certain (floors no memory can clear).
- the floors against MemTotal and MemAvailable (`runners/watchdog/host_fit.py`);
- on a unified-memory host, what a vLLM target asks for (`--gpu-memory-utilization` x MemTotal) plus the
  WARN floor against MemAvailable, and MemFree short of it (only the page cache in the way);
- another run's serve target live on this host (a process carrying its `GB10_RUN_ID`, or a labelled
  container whose runner lives): two targets would share the memory the guard judges;
- the host's known-OOM record (`runners/evidence/oom_record.py`): an arm whose target, with the same
  identity and env, the guard or the kernel already killed on this host;
- `gb10-console doctor`'s checks (`runners/soak/doctor.py`) but memory, judged above: the container engine, the
  image, the GPU runtime, the mounts' host paths, free disk at the run directory, logind's RemoveIPC. A failed
  one refuses `run` (`force` downgrades RemoveIPC only: it bites only if the user's last session closes mid-run)
  and is a warning for `validate`, which prints the mounts itself.
"""

from __future__ import annotations

import asyncio
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from runners.evidence.oom_record import known_oom_matches, record_path
from runners.host.live_targets import SCAN_DEADLINE_S, live_targets
from runners.host.meminfo import MemInfo, read_meminfo
from runners.host.page_cache import drop_page_cache
from runners.plan.load import LoadedPlan
from runners.plan.sections import WatchdogSpec
from runners.plan.serve_spec import DockerServe
from runners.plan.vllm_memory import vllm_memory_ask
from runners.run.event_types import PageCacheDropped
from runners.run.events import EventLog
from runners.run.paths import default_runs_dir
from runners.serve.orphans import live_run_containers
from runners.soak.doctor import plan_checks
from runners.watchdog.host_fit import MemoryNeed, floor_fit, memory_need, need_fit
from runners.watchdog.samplers import NvmlSampler

NVML_TIMEOUT_S = 2.0

FORCE_HINT = "pass --force to run it anyway"
JUDGEMENT_CHECKS = ("logind RemoveIPC",)  # doctor checks whose failure may not bite: --force runs anyway


@dataclass
class HostPreflight:
    """`errors` refuse the plan; `warnings` are printed (and the runner emits its own events)."""

    errors: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)


def host_preflight(loaded: LoadedPlan, force: bool = False, run_id: str | None = None,
                   starting: bool = True, runs_dir: Path | None = None) -> HostPreflight:  # fmt: skip
    """Every pre-flight finding for `loaded` on this host (`run_id`: a resumed run's own, never "another");
    `force` downgrades the refusals that are a judgement (another run's live target, a known OOM, RemoveIPC);
    without `starting` (validate) another run's live target and the doctor's failures are only warnings: they
    say nothing about the plan. `runs_dir`: where the run directory will be (default ./runs)."""
    out = HostPreflight()
    doctor_findings(out, loaded, force, starting, runs_dir or default_runs_dir())
    for problem in other_runs_live(loaded, run_id):
        if force or not starting:
            out.warnings.append(problem + (" (--force: starting anyway)" if force else ""))
        else:
            out.errors.append(f"{problem}; {FORCE_HINT}")
    meminfo = read_meminfo()
    fit = floor_fit(loaded.plan.watchdog, meminfo)
    out.errors += fit.errors
    out.warnings += fit.warnings
    need = target_memory_need(loaded, meminfo)
    if need is not None and not fit.errors:
        fit = need_fit(need, meminfo)
        out.errors += fit.errors
        out.warnings += [w for w in fit.warnings if not loaded.plan.watchdog.drop_page_cache]  # the runner drops it
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


def doctor_findings(out: HostPreflight, loaded: LoadedPlan, force: bool, starting: bool, runs_dir: Path) -> None:
    """Add the doctor's failures (errors when `starting`, else warnings) and warnings to `out`."""
    for check in plan_checks(loaded, runs_dir, with_memory=False):
        if check.status not in ("fail", "warn"):
            continue
        text = f"{check.name}: {check.detail}" + (f"; {check.fix}" if check.fix else "")
        if check.status == "warn" or not starting:
            out.warnings.append(text)
        elif force and check.name in JUDGEMENT_CHECKS:
            out.warnings.append(f"{text} (--force: running it anyway)")
        else:
            out.errors.append(text + (f"; {FORCE_HINT}" if check.name in JUDGEMENT_CHECKS else ""))


def host_is_unified(spec: WatchdogSpec, meminfo: MemInfo) -> bool | None:
    """Whether the GPU allocates from host memory: the plan's `unified_memory`, else what NVML says (None:
    no GPU, or NVML cannot tell)."""
    if spec.unified_memory != "auto":
        return spec.unified_memory == "yes"
    return NvmlSampler(timeout_s=NVML_TIMEOUT_S).sample(meminfo.total).unified


def target_memory_need(loaded: LoadedPlan, meminfo: MemInfo) -> MemoryNeed | None:
    """What the plan's vLLM target takes of this unified-memory host (None when that cannot be said)."""
    ask = vllm_memory_ask(loaded.plan.serve)
    if ask is None:
        return None
    return memory_need(loaded.plan.watchdog, meminfo, ask, host_is_unified(loaded.plan.watchdog, meminfo))


async def drop_cache_before_start(loaded: LoadedPlan, events: EventLog, arm: str, mode: str) -> None:
    """With `watchdog.drop_page_cache`, drop the page cache before a vLLM target starts on a unified-memory
    host whose MemFree is short of what it asks while MemAvailable holds it; the attempt is an event."""
    if not loaded.plan.watchdog.drop_page_cache:
        return
    need = await asyncio.to_thread(target_memory_need, loaded, read_meminfo())
    if need is None or not need.short_of_free:
        return
    done = await asyncio.to_thread(drop_page_cache)
    events.emit(PageCacheDropped(arm, mode, done.dropped, done.free_before_gib, done.free_after_gib,
                                 round(need.need_gib, 2), done.reason))  # fmt: skip


def other_runs_live(loaded: LoadedPlan, run_id: str | None) -> list[str]:
    """One line per other run whose serve target is live on this host now."""
    scan = live_targets(exclude_run=run_id)
    out = [
        f"another run's serve target is live on this host: pid {t.pid} ({t.processes} process(es), run {t.run_id}"
        + (f", {t.env_dir}" if t.env_dir else "")
        + f"): {t.command[:80]}; two targets would share the memory the "
        "guard judges. Let that run finish, abort it (gb10-console abort RUN_DIR), or stop the process"
        for t in scan.targets
    ]
    if not scan.complete:
        out.append(f"the scan for other runs' targets did not finish within {SCAN_DEADLINE_S:g} s (a process stuck "
                   "in memory reclaim?): this host may be in trouble")  # fmt: skip
    serve = loaded.plan.serve
    socket = serve.socket if isinstance(serve, DockerServe) else None
    with ThreadPoolExecutor(1) as pool:  # its own loop: the caller may be inside one (a test, the console)
        containers = pool.submit(asyncio.run, live_run_containers(run_id, socket)).result()
    out += [
        f"another run's container is live on this host: {c.name} (run {c.run_id}, arm {c.arm}, runner {c.owner}); "
        "two targets would share the memory the guard judges. Let that run finish or abort it"
        for c in containers
    ]
    return out
