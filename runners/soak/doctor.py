"""`gb10-console doctor`: is this host ready to run soaks (of a plan, or any)? The checks in one table.

The judgements are pure functions (`runners/host/doctor.py`, and `memory_check` here over the watchdog's
`floor_fit`); this module reads the host for them and picks what applies to the plan's target:

| check | applies to | fails when |
| --- | --- | --- |
| docker daemon | every host (fails only for a docker target) | the engine's socket is missing or silent |
| image | docker targets | the image is not on the engine (it is never pulled) |
| gpu runtime | docker targets with serve.gpus | no nvidia runtime, hook or CDI spec |
| mounts | docker targets | a read-only mount's host path is missing |
| disk | every host | free space at the run directory is under its floor |
| logind RemoveIPC | process and docker targets | RemoveIPC=yes for the target's non-system, non-lingering user |
| memory | every host | a floor is not below MemTotal (MemAvailable under WARN only warns) |

`host_preflight` feeds the same checks (all but memory, whose home there is `floor_fit`) to `validate` and `run`.
"""

from __future__ import annotations

import asyncio
import os
import pwd
import shutil
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from engine.units import GIB, gib_text
from runners.host.doctor import (
    PROFILED_FLOORS,
    UNPROFILED_FLOORS,
    Check,
    EngineProbe,
    LogindView,
    daemon_check,
    disk_check,
    existing_ancestor,
    free_bytes,
    gpu_runtime_check,
    image_check,
    logind_check,
    mounts_check,
    probe_engine,
)
from runners.host.logind import lingering, remove_ipc, systemd_booted
from runners.host.meminfo import MemInfo, read_meminfo
from runners.plan.load import LoadedPlan
from runners.plan.sections import WatchdogSpec
from runners.plan.serve_spec import DockerServe, ExternalServe
from runners.watchdog.host_fit import floor_fit
from runners.watchdog.policy import default_floors

ROOT_USERS = ("", "root", "0")  # an image's Config.User that runs its processes as root


def memory_check(spec: WatchdogSpec, meminfo: MemInfo) -> Check:
    """MemAvailable against the plan's floors (or those sized from MemTotal), judged by the watchdog's `floor_fit`."""
    if meminfo.total is None or meminfo.available is None:
        return Check("memory", "skipped", "/proc/meminfo has no MemTotal or MemAvailable")
    sized = spec.warn_gib is None
    if sized:
        floors = default_floors(meminfo.total)
        spec = spec.model_copy(update={"warn_gib": floors.warn_gib, "abort_gib": floors.abort_gib,
                                       "kill_gib": floors.kill_gib})  # fmt: skip
    detail = (f"MemAvailable {gib_text(meminfo.available / GIB)} of MemTotal {gib_text(meminfo.total / GIB)} GiB; "
              f"floors {gib_text(spec.warn_gib or 0)} / {gib_text(spec.abort_gib or 0)} / "
              f"{gib_text(spec.kill_gib or 0)} GiB ({'sized from this host' if sized else 'the plan'})")  # fmt: skip
    fit = floor_fit(spec, meminfo)
    if fit.errors:
        return Check("memory", "fail", detail, fit.errors[0])
    if fit.warnings:
        return Check("memory", "warn", detail, fit.warnings[0] + "; free memory first")
    return Check("memory", "ok", detail)


def image_uid(inspect: dict | None) -> int | None:
    """The host uid an image's processes run as (no user namespace): 0 for root, the number a numeric USER gives,
    None when it cannot be said (no inspect, a user name)."""
    if inspect is None:
        return None
    user = str((inspect.get("Config") or {}).get("User") or "").partition(":")[0]
    if user in ROOT_USERS:
        return 0
    return int(user) if user.isdigit() else None


def _user_name(uid: int) -> str | None:
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return None


def remove_ipc_check(uid: int | None, whose: str, root: Path = Path("/")) -> Check:
    """`logind_check` for `uid` (the user the target's processes run as), with this host's logind configuration
    under `root`; an unknown uid (`whose` names it) warns when RemoveIPC is on."""
    booted, setting = systemd_booted(root), remove_ipc(root)
    if uid is None:
        if booted and setting.enabled:
            return Check("logind RemoveIPC", "warn", f"RemoveIPC=yes ({setting.source}); {whose}: cannot tell if "
                         "it is a login user whose IPC logind removes when its last session closes",
                         "run the target as root, or set RemoveIPC=no")  # fmt: skip
        uid = 0  # nothing to remove, or no logind: the judgement does not depend on the user
    user = _user_name(uid)
    check = logind_check(LogindView(booted, setting, uid, user, lingering(user, root)))
    return Check(check.name, check.status, f"{whose}: {check.detail}", check.fix)


def engine_probe(serve: DockerServe | None) -> EngineProbe:
    """Probe the engine the plan's docker target uses (the default socket without one), from a thread with its own
    loop: the caller may run inside one."""
    socket = serve.socket if serve else None
    image = serve.image if serve else None
    with ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, probe_engine(socket, image)).result()


def plan_checks(loaded: LoadedPlan | None, runs_dir: Path, with_memory: bool = True, root: Path = Path("/"),
                proc: Path = Path("/proc")) -> list[Check]:  # fmt: skip
    """Every doctor check for `loaded` (None: the checks any soak needs) with runs written under `runs_dir`."""
    serve = loaded.plan.serve if loaded else None
    docker = serve if isinstance(serve, DockerServe) else None
    checks: list[Check] = []
    probe = None
    if isinstance(serve, ExternalServe) or (serve is not None and docker is None):
        checks.append(Check("docker daemon", "skipped", f"a {serve.kind} target needs no container engine"))
    else:
        probe = engine_probe(docker)
        checks.append(daemon_check(probe, needed=docker is not None))
    if docker is not None and loaded is not None and probe is not None:
        checks += [image_check(probe, docker.image), gpu_runtime_check(probe, docker.gpus, shutil.which),
                   mounts_check(docker.binds(loaded.resolve))]  # fmt: skip
    profiled = loaded is None or any(phase.profile for phase in loaded.plan.phases)
    where = existing_ancestor(runs_dir)
    checks.append(disk_check(where, free_bytes(where), PROFILED_FLOORS if profiled else UNPROFILED_FLOORS))
    if isinstance(serve, ExternalServe):
        checks.append(Check("logind RemoveIPC", "skipped", "an external target is not started here"))
    elif docker is not None:
        inspect = probe.image if probe else None
        user = str((inspect or {}).get("Config", {}).get("User") or "root")
        whose = f"the container runs as {user!r}" if inspect else "the container's user (image not inspected)"
        checks.append(remove_ipc_check(image_uid(inspect), whose, root))
    else:
        checks.append(remove_ipc_check(os.getuid(), "the target runs as this user", root))
    if with_memory:
        checks.append(memory_check(loaded.plan.watchdog if loaded else WatchdogSpec(), read_meminfo(proc)))
    return checks


def failed(checks: list[Check]) -> bool:
    """Whether any check failed (warnings never fail)."""
    return any(c.status == "fail" for c in checks)
