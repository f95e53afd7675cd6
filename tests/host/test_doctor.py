"""The doctor's host checks: each judgement on fake inputs (engine answers, statvfs, mounts, logind views), then
against the real things: the suite's Docker engine, a silent socket, statvfs of this filesystem."""

from __future__ import annotations

import asyncio
import os
import shutil
import time
from pathlib import Path

import pytest

from engine.units import GIB
from runners.host import doctor
from runners.host.doctor import (
    PROFILED_FLOORS,
    UNPROFILED_FLOORS,
    DiskFloors,
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
from runners.host.logind import RemoveIPC
from tests.docker_env import DockerEngine

VERSION = {"Version": "28.1.1", "ApiVersion": "1.49"}
ENGINE = EngineProbe(Path("/run/docker.sock"), VERSION, {"Runtimes": {"runc": {}}}, {"Id": "sha256:" + "ab" * 32})
DOWN = EngineProbe(None, error="no Docker or Podman socket found")


def no_hook(_: str) -> None:
    return None


def test_the_daemon_fails_only_where_the_plan_needs_it() -> None:
    assert daemon_check(ENGINE, needed=True).detail == "Docker 28.1.1 (API 1.49) at /run/docker.sock"
    down = daemon_check(DOWN, needed=True)
    assert down.status == "fail" and "systemctl start docker" in down.fix and "DOCKER_HOST" in down.fix
    assert daemon_check(DOWN, needed=False).status == "warn"
    assert "needed only for docker targets" in daemon_check(DOWN, needed=False).detail


def test_the_image_is_looked_up_never_pulled() -> None:
    found = image_check(ENGINE, "nvllm:dev")
    assert found.status == "ok" and found.detail == "nvllm:dev: sha256:abababababab"
    missing = image_check(
        EngineProbe(ENGINE.socket, VERSION, {}, None, "look up image: Docker answered 500"), "nvllm:dev"
    )
    assert missing.detail == "nvllm:dev: look up image: Docker answered 500"
    assert missing.status == "fail" and "never pulls" in missing.fix and "docker pull nvllm:dev" in missing.fix
    assert image_check(DOWN, "nvllm:dev").status == "skipped"


def test_a_gpu_runtime_is_the_nvidia_runtime_the_hook_or_a_cdi_spec(tmp_path: Path) -> None:
    bare = EngineProbe(ENGINE.socket, VERSION, {"Runtimes": {"runc": {}}, "CDISpecDirs": [str(tmp_path)]})
    none = gpu_runtime_check(bare, "all", no_hook)
    assert none.status == "fail" and "runtimes runc" in none.detail and "nvidia-ctk runtime configure" in none.fix
    assert 'serve.gpus = "none"' in none.fix
    nvidia = EngineProbe(ENGINE.socket, VERSION, {"Runtimes": {"runc": {}, "nvidia": {}}, "CDISpecDirs": []})
    assert gpu_runtime_check(nvidia, 1, no_hook).status == "ok"
    hooked = gpu_runtime_check(ENGINE, "all", lambda name: f"/usr/bin/{name}")
    assert hooked.status == "ok" and "/usr/bin/nvidia-container-runtime-hook" in hooked.detail
    (tmp_path / "other.yaml").write_text("kind: example.com/fpga\n")
    cdi = EngineProbe(ENGINE.socket, VERSION, {"CDISpecDirs": [str(tmp_path)]}, podman=True)
    assert gpu_runtime_check(cdi, "all", no_hook).status == "fail"
    assert "nvidia-ctk cdi generate" in gpu_runtime_check(cdi, "all", no_hook).fix
    (tmp_path / "nvidia.yaml").write_text("cdiVersion: 0.5.0\nkind: nvidia.com/gpu\n")
    assert gpu_runtime_check(cdi, "all", no_hook).detail == f"gpus = 'all': CDI spec {tmp_path / 'nvidia.yaml'}"
    podman_hook = EngineProbe(ENGINE.socket, VERSION, {"Runtimes": {"nvidia": {}}, "CDISpecDirs": []}, podman=True)
    assert gpu_runtime_check(podman_hook, "all", lambda n: n).status == "fail"  # Podman's API honours CDI only
    assert gpu_runtime_check(ENGINE, "none", no_hook).status == "skipped"
    assert gpu_runtime_check(DOWN, "all", no_hook).status == "skipped"


def test_missing_mount_sources_fail_when_read_only_and_warn_when_docker_creates_them(tmp_path: Path) -> None:
    model = tmp_path / "model"
    model.mkdir()
    assert mounts_check([(model, "/models/m", "ro")]).status == "ok"
    assert mounts_check([]).status == "skipped"
    rw = mounts_check([(model, "/models/m", "ro"), (tmp_path / "cache", "/root/.cache", "rw")])
    assert rw.status == "warn" and f"{tmp_path / 'cache'} (for /root/.cache)" in rw.detail
    ro = mounts_check([(tmp_path / "gone", "/models/g", "ro"), (tmp_path / "cache", "/root/.cache", "rw")])
    assert ro.status == "fail" and ro.detail.startswith(f"read-only, missing: {tmp_path / 'gone'} (for /models/g)")


def test_disk_floors_fail_warn_and_pass() -> None:
    floors = DiskFloors(fail_gib=4, warn_gib=20)
    assert disk_check(Path("/runs"), 3 * GIB, floors).status == "fail"
    warn = disk_check(Path("/runs"), 10 * GIB, floors)
    assert warn.status == "warn" and warn.detail == "10 GiB free at /runs (fail below 4, warn below 20 GiB)"
    assert "run --out DIR" in warn.fix
    assert disk_check(Path("/runs"), 20 * GIB, floors).status == "ok"
    assert disk_check(Path("/runs"), None, floors).status == "warn"
    assert PROFILED_FLOORS.fail_gib > UNPROFILED_FLOORS.fail_gib
    assert PROFILED_FLOORS.warn_gib > UNPROFILED_FLOORS.warn_gib


def test_free_bytes_is_what_an_unprivileged_writer_may_use(tmp_path: Path) -> None:
    fake = os.statvfs_result((4096, 4096, 1000, 900, 500, 0, 0, 0, 0, 255))  # 500 blocks available to users
    assert free_bytes(tmp_path, lambda _: fake) == 500 * 4096

    def broken(path: Path) -> os.statvfs_result:
        raise PermissionError(13, "denied", str(path))

    assert free_bytes(tmp_path, broken) is None
    real = free_bytes(tmp_path)  # the real statvfs against the standard library's view of the same filesystem
    assert real is not None and abs(real - shutil.disk_usage(tmp_path).free) < GIB
    assert existing_ancestor(tmp_path / "runs" / "r1") == tmp_path


def _view(enabled: bool = True, uid: int = 1000, linger: bool = False, booted: bool = True) -> LogindView:
    return LogindView(booted, RemoveIPC(enabled, "/etc/systemd/logind.conf:3"), uid, "alice", linger)


def test_remove_ipc_fails_only_for_a_login_user_who_does_not_linger() -> None:
    fail = logind_check(_view())
    assert fail.status == "fail" and fail.detail.startswith("RemoveIPC=yes (/etc/systemd/logind.conf:3); uid 1000")
    assert "RemoveIPC=no" in fail.fix and "systemctl restart systemd-logind" in fail.fix
    assert "logind.conf.d" in fail.fix
    assert logind_check(_view(uid=0)).status == "ok" and "system user, exempt" in logind_check(_view(uid=0)).detail
    assert logind_check(_view(linger=True)).status == "ok"
    assert logind_check(_view(enabled=False)).status == "ok"
    assert logind_check(_view(booted=False)).status == "skipped"


@pytest.mark.slow
async def test_the_real_engine_answers_its_version_and_the_image(docker_engine: DockerEngine,
                                                                  busybox_image: str) -> None:  # fmt: skip
    probe = await probe_engine(str(docker_engine.socket), busybox_image)
    assert probe.error is None and probe.info is not None, probe
    daemon = daemon_check(probe, needed=True)
    assert daemon.status == "ok" and str(docker_engine.socket) in daemon.detail and probe.version is not None
    assert daemon.detail.startswith(f"Docker {probe.version['Version']} (API {probe.version['ApiVersion']})")
    assert image_check(probe, busybox_image).status == "ok"
    missing = await probe_engine(str(docker_engine.socket), "gb10-test/not-here:1")
    check = image_check(missing, "gb10-test/not-here:1")
    assert check.status == "fail" and check.detail == f"gb10-test/not-here:1: not on the engine at {probe.socket}"
    gpu = gpu_runtime_check(probe, "all", no_hook)
    runtimes = probe.info.get("Runtimes") or {}
    has_cdi = doctor.cdi_gpu_specs([Path(d) for d in probe.info.get("CDISpecDirs") or []] or list(doctor.CDI_DIRS))
    assert gpu.status == ("ok" if "nvidia" in runtimes or has_cdi else "fail"), gpu
    assert all(name in gpu.detail for name in runtimes) or gpu.status == "ok"


async def test_a_silent_or_missing_socket_is_an_error_within_the_deadline(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setattr(doctor, "PROBE_CALL_DEADLINE_S", 0.3)
    held: list[asyncio.StreamWriter] = []

    async def hold(_: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        held.append(writer)  # accept, never answer

    server = await asyncio.start_unix_server(hold, path=str(tmp_path / "silent.sock"))
    try:
        started = time.monotonic()
        probe = await probe_engine(str(tmp_path / "silent.sock"), "x")
        assert time.monotonic() - started < 5
        assert probe.error is not None and "did not answer within 0.3 s" in probe.error
    finally:
        server.close()
        for writer in held:
            writer.close()
    gone = await probe_engine(str(tmp_path / "gone.sock"), None)
    assert gone.error is not None and "cannot reach the engine" in gone.error
    assert daemon_check(gone, needed=True).status == "fail"
