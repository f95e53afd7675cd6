"""The host checks of `gb10-console doctor`, each a pure judgement over what was read from this host.

A check is ok, warn (printed, never fails), fail (something a soak needs is missing: `doctor` exits 1, `run`
refuses) or skipped (does not apply, with the reason). Reading the host (the engine's socket, statvfs, the
logind configuration) happens in small readers with deadlines, so every judgement is tested on fake inputs.
`runners/soak/doctor.py` puts them together for a plan.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Literal

from engine.deadlines import timeout
from engine.units import GIB, gib_text
from runners.host.docker_api import START_ENGINE_HINT, DockerClient, DockerError, find_socket
from runners.host.logind import RemoveIPC, is_system_user

Status = Literal["ok", "warn", "fail", "skipped"]
PROBE_CALL_DEADLINE_S = 5.0  # each Engine API call
PROBE_DEADLINE_S = 15.0  # the whole probe: version, info, image
CDI_DIRS = (Path("/etc/cdi"), Path("/var/run/cdi"))  # the CDI spec directories when the engine names none
GPU_HOOK = "nvidia-container-runtime-hook"  # on dockerd's PATH, it serves `--gpus` without an "nvidia" runtime


@dataclass(frozen=True)
class Check:
    """One finding: what was checked, its status, what was measured (`detail`) and what to do (`fix`)."""

    name: str
    status: Status
    detail: str
    fix: str = ""

    def to_json(self) -> dict:
        """The check as a JSON object (every field, `fix` "" when there is nothing to do)."""
        return asdict(self)


@dataclass(frozen=True)
class EngineProbe:
    """What the container engine said: its version and info, the image's inspect, or the error that stopped it."""

    socket: Path | None
    version: dict | None = None
    info: dict | None = None
    image: dict | None = None
    image_error: str | None = None
    error: str | None = None
    podman: bool = False


async def probe_engine(explicit_socket: str | None, image: str | None) -> EngineProbe:
    """Ask the engine (the plan's socket, else DOCKER_HOST, the default, Podman's) its version, info and `image`,
    each call under PROBE_CALL_DEADLINE_S and all under PROBE_DEADLINE_S; never raises."""
    try:
        socket = find_socket(explicit_socket)
    except DockerError as exc:
        return EngineProbe(None, error=str(exc))
    try:
        async with timeout(PROBE_DEADLINE_S), DockerClient(socket, PROBE_CALL_DEADLINE_S) as client:
            version = await client.connect()
            info = await client.info()
            inspect, image_error = None, None
            if image:
                try:
                    inspect = await client.image(image)
                except DockerError as exc:  # 404: the daemon's hint repeats the check's fix
                    image_error = f"not on the engine at {socket}" if exc.status == 404 else str(exc)
            return EngineProbe(socket, version, info, inspect, image_error, podman=client.is_podman)
    except DockerError as exc:
        return EngineProbe(socket, error=str(exc))
    except asyncio.TimeoutError:
        return EngineProbe(socket, error=f"the engine at {socket} did not answer within {PROBE_DEADLINE_S:g} s")


def daemon_check(probe: EngineProbe, needed: bool) -> Check:
    """The engine reachable, with its version; unreachable fails when the plan has a docker target (`needed`),
    else only warns: a process or external target needs no engine."""
    if probe.error is not None or probe.version is None:
        status: Status = "fail" if needed else "warn"
        why = "" if needed else " (needed only for docker targets)"
        detail = (probe.error or "no answer").removesuffix(f"; {START_ENGINE_HINT}")  # the hint is the fix
        return Check("docker daemon", status, detail + why, START_ENGINE_HINT)
    engine = "Podman" if probe.podman else "Docker"
    version, api = probe.version.get("Version", "?"), probe.version.get("ApiVersion", "?")
    return Check("docker daemon", "ok", f"{engine} {version} (API {api}) at {probe.socket}")


def image_check(probe: EngineProbe, image: str) -> Check:
    """The plan's image present on the engine (gb10-console never pulls)."""
    if probe.error is not None:
        return Check("image", "skipped", f"{image}: the engine did not answer (see docker daemon)")
    if probe.image is None:
        return Check("image", "fail", f"{image}: {probe.image_error or 'not found'}",
                     f"gb10-console never pulls: `docker pull {image}`, `docker load -i FILE` or build it, "
                     "or fix serve.image")  # fmt: skip
    size = probe.image.get("Size")
    size_text = f", {gib_text(size / GIB)} GiB" if isinstance(size, int) else ""
    return Check("image", "ok", f"{image}: {str(probe.image.get('Id', '?'))[:19]}{size_text}")


def cdi_gpu_specs(dirs: list[Path]) -> list[Path]:
    """CDI spec files (yaml/json) in `dirs` that declare NVIDIA GPUs (`nvidia.com/gpu`)."""
    found = []
    for directory in dirs:
        try:
            candidates = sorted(p for p in directory.iterdir() if p.suffix in (".yaml", ".yml", ".json"))
        except OSError:
            continue
        for path in candidates:
            try:
                if "nvidia.com/gpu" in path.read_text(errors="replace"):
                    found.append(path)
            except OSError:
                continue
    return found


def gpu_runtime_check(probe: EngineProbe, gpus: str | int, which: Callable[[str], str | None]) -> Check:
    """A way for the engine to give containers GPUs: the `nvidia` runtime, NVIDIA's hook on PATH (Docker's
    `--gpus`), or a CDI spec of `nvidia.com/gpu` (the only way Podman's compatible API honours)."""
    if gpus == "none":
        return Check("gpu runtime", "skipped", 'serve.gpus = "none"')
    if probe.error is not None or probe.info is None:
        return Check("gpu runtime", "skipped", "the engine did not answer (see docker daemon)")
    info = probe.info
    dirs = [Path(d) for d in info.get("CDISpecDirs") or []] or list(CDI_DIRS)
    specs = cdi_gpu_specs(dirs)
    ways = [f"CDI spec {p}" for p in specs]
    if not probe.podman:
        if "nvidia" in (info.get("Runtimes") or {}):
            ways.insert(0, 'the daemon\'s "nvidia" runtime')
        hook = which(GPU_HOOK)
        if hook:
            ways.append(f"{hook}")
    if ways:
        return Check("gpu runtime", "ok", f"gpus = {gpus!r}: " + ", ".join(ways))
    if probe.podman:
        fix = "generate the CDI spec: `sudo nvidia-ctk cdi generate --output=/etc/cdi/nvidia.yaml`"
    else:
        fix = ("install the NVIDIA Container Toolkit, then `sudo nvidia-ctk runtime configure --runtime=docker && "
               "sudo systemctl restart docker`")  # fmt: skip
    runtimes = ", ".join(info.get("Runtimes") or {}) or "none"
    return Check("gpu runtime", "fail", f"gpus = {gpus!r} but no GPU runtime: runtimes {runtimes}, no "
                 f"nvidia.com/gpu CDI spec in {', '.join(map(str, dirs))}, no {GPU_HOOK} on PATH",
                 fix + ', or set serve.gpus = "none"')  # fmt: skip


def mounts_check(binds: list[tuple[Path, str, str]]) -> Check:
    """Every host path the plan's mounts name (the model, its cache) exists: a missing read-only one fails (the
    container cannot start), a missing read-write one warns (Docker creates it empty: a model will not be there)."""
    if not binds:
        return Check("mounts", "skipped", "serve.mounts names no host path")
    missing_ro = [f"{src} (for {dst})" for src, dst, option in binds if option == "ro" and not src.exists()]
    missing_rw = [f"{src} (for {dst})" for src, dst, option in binds if option != "ro" and not src.exists()]
    if missing_ro or missing_rw:
        parts = [f"read-only, missing: {', '.join(missing_ro)}"] if missing_ro else []
        if missing_rw:
            parts.append(f"read-write, missing (created empty at start): {', '.join(missing_rw)}")
        return Check("mounts", "fail" if missing_ro else "warn", "; ".join(parts),
                     "put the model there (or fix serve.mounts: HOST paths are relative to the plan file)")  # fmt: skip
    return Check("mounts", "ok", f"{len(binds)} host path(s) exist: " + ", ".join(str(s) for s, _, _ in binds))


@dataclass(frozen=True)
class DiskFloors:
    """Free space at the run directory below `fail_gib` fails, below `warn_gib` warns."""

    fail_gib: float
    warn_gib: float


# A profiled step writes the torch profiler's trace as plain JSON and gzips it after: one vLLM process's trace of a
# 27B model runs to 1-3 GB before compression, two processes (API server, EngineCore) per profiled step, moved into
# the run. Below 4 GiB one profiled step may not fit; 20 GiB holds a profiled step per arm of a four-arm plan.
# Without profiling a soak writes events, records and serve logs: tens to hundreds of MB, so 1 GiB fails, 5 warns.
PROFILED_FLOORS = DiskFloors(fail_gib=4.0, warn_gib=20.0)
UNPROFILED_FLOORS = DiskFloors(fail_gib=1.0, warn_gib=5.0)


def existing_ancestor(path: Path) -> Path:
    """`path`, or its nearest ancestor that exists (the run directory is made at start)."""
    path = path.absolute()
    while not path.exists() and path != path.parent:
        path = path.parent
    return path


def free_bytes(path: Path, statvfs: Callable[[Path], os.statvfs_result] = os.statvfs) -> int | None:
    """Bytes an unprivileged writer may use on `path`'s filesystem (f_bavail x f_frsize); None when unreadable."""
    try:
        st = statvfs(path)
    except OSError:
        return None
    return st.f_bavail * st.f_frsize


def disk_check(where: Path, free: int | None, floors: DiskFloors) -> Check:
    """Free space at the run directory `where` against `floors`."""
    fix = f"free space on {where}'s filesystem, or put the run elsewhere (`run --out DIR`)"
    if free is None:
        return Check("disk", "warn", f"{where}: statvfs failed, free space unknown", fix)
    text = f"{gib_text(free / GIB)} GiB free at {where} (fail below {gib_text(floors.fail_gib)}, warn below " \
           f"{gib_text(floors.warn_gib)} GiB)"  # fmt: skip
    if free < floors.fail_gib * GIB:
        return Check("disk", "fail", text, fix)
    if free < floors.warn_gib * GIB:
        return Check("disk", "warn", text, fix)
    return Check("disk", "ok", text)


@dataclass(frozen=True)
class LogindView:
    """What the RemoveIPC judgement needs: systemd running, the effective setting, the uid, whether it lingers."""

    booted: bool
    setting: RemoveIPC
    uid: int
    user: str | None
    lingering: bool


REMOVE_IPC_FIX = ("set `RemoveIPC=no` in /etc/systemd/logind.conf.d/gb10.conf under [Login], then `sudo systemctl "
                  "restart systemd-logind` (or `loginctl enable-linger USER`, or run the soak as root)")  # fmt: skip


def logind_check(view: LogindView) -> Check:
    """RemoveIPC=yes fails for a non-system user who does not linger: closing the last ssh session deletes the
    target's shared memory and semaphores, and vLLM then blocks forever while /health answers."""
    if not view.booted:
        return Check("logind RemoveIPC", "skipped", "systemd does not run this host: no logind to remove IPC")
    who = f"uid {view.uid}" + (f" ({view.user})" if view.user else "")
    said = f"RemoveIPC={'yes' if view.setting.enabled else 'no'} ({view.setting.source})"
    if not view.setting.enabled:
        return Check("logind RemoveIPC", "ok", said)
    if is_system_user(view.uid):
        return Check("logind RemoveIPC", "ok", f"{said}; {who} is a system user, exempt")
    if view.lingering:
        return Check("logind RemoveIPC", "ok", f"{said}; {who} lingers, so logind keeps its IPC past logout")
    return Check("logind RemoveIPC", "fail", f"{said}; {who}: when its last session closes logind deletes the "
                 "target's shared memory and semaphores, and vLLM blocks forever while /health answers",
                 REMOVE_IPC_FIX)  # fmt: skip
