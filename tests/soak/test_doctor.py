"""The doctor for a plan: memory against the floors, the user whose IPC logind would remove, the checks each target
kind gets, and how `validate` (warnings) and `run` (refusals before anything starts) use them through
`host_preflight`, against the suite's real Docker engine."""

from __future__ import annotations

from pathlib import Path

import pytest

from console.cli import main
from engine.units import GIB
from runners.host.doctor import Check
from runners.host.meminfo import MemInfo, read_meminfo
from runners.plan.load import load_plan
from runners.plan.sections import WatchdogSpec
from runners.soak import host_preflight
from runners.soak.doctor import failed, image_uid, memory_check, plan_checks, remove_ipc_check
from runners.watchdog.policy import default_floors
from tests.docker_env import DockerEngine
from tests.support.plans import Plan
from tests.support.project import ENGINE_CONFIG

SPEC = WatchdogSpec(warn_gib=16, abort_gib=10, kill_gib=6)


def test_memory_is_judged_by_floor_fit_against_the_plan_s_floors_or_the_host_s() -> None:
    small = memory_check(SPEC, MemInfo(total=12 * GIB, available=10 * GIB))
    assert small.status == "fail" and small.fix.startswith("watchdog.warn_gib = 16")
    assert small.detail == "MemAvailable 10 of MemTotal 12 GiB; floors 16 / 10 / 6 GiB (the plan)"
    busy = memory_check(SPEC, MemInfo(total=120 * GIB, available=12 * GIB))
    assert busy.status == "warn" and "the first start waits" in busy.fix
    assert memory_check(SPEC, MemInfo(total=120 * GIB, available=100 * GIB)).status == "ok"
    sized = memory_check(WatchdogSpec(), MemInfo(total=120 * GIB, available=2 * GIB))
    assert sized.status == "warn" and sized.detail.endswith("floors 16 / 10 / 6 GiB (sized from this host)")
    assert memory_check(SPEC, MemInfo()).status == "skipped"


def test_memory_on_this_host_s_real_meminfo() -> None:
    meminfo = read_meminfo()
    assert meminfo.total is not None and meminfo.available is not None
    check = memory_check(WatchdogSpec(), meminfo)
    warn = default_floors(meminfo.total).warn_gib
    assert check.status == ("ok" if meminfo.available / GIB > warn else "warn"), check
    assert "(sized from this host)" in check.detail and check.detail.startswith("MemAvailable ")


@pytest.mark.parametrize(
    ("user", "uid"), [("", 0), ("root", 0), ("0:0", 0), ("1000", 1000), ("1000:1000", 1000), ("vllm", None)]
)
def test_the_uid_an_image_runs_as(user: str, uid: int | None) -> None:
    assert image_uid({"Config": {"User": user}}) == uid
    assert image_uid(None) is None


def test_remove_ipc_for_the_target_s_user_on_a_fake_host(tmp_path: Path) -> None:
    (tmp_path / "run/systemd/system").mkdir(parents=True)  # booted with systemd; no logind.conf: RemoveIPC=yes
    check = remove_ipc_check(65534, "the target runs as this user", tmp_path)
    assert check.status == "fail" and check.detail.startswith("the target runs as this user: RemoveIPC=yes")
    assert "uid 65534 (nobody)" in check.detail
    assert remove_ipc_check(None, "the container runs as 'vllm'", tmp_path).status == "warn"
    assert remove_ipc_check(0, "x", tmp_path).status == "ok"
    (tmp_path / "var/lib/systemd/linger").mkdir(parents=True)
    (tmp_path / "var/lib/systemd/linger/nobody").write_text("")
    assert remove_ipc_check(65534, "x", tmp_path).status == "ok"  # a lingering user keeps its IPC
    drop_in = tmp_path / "etc/systemd/logind.conf.d/gb10.conf"
    drop_in.parent.mkdir(parents=True)
    drop_in.write_text("[Login]\nRemoveIPC=no\n")
    assert remove_ipc_check(None, "x", tmp_path).status == "ok"


def test_a_process_plan_gets_the_host_checks_and_no_engine(tmp_path: Path) -> None:
    phase = {"name": "c", "kind": "concurrent", "streams": 1}
    plan = Plan("p", {"engine_config": str(ENGINE_CONFIG)}, [{"name": "a"}], [phase]).write(tmp_path)
    checks = plan_checks(load_plan(plan), tmp_path / "runs")
    assert [c.name for c in checks] == ["docker daemon", "disk", "logind RemoveIPC", "memory"]
    assert checks[0].status == "skipped" and checks[0].detail == "a process target needs no container engine"
    assert str(tmp_path) in checks[1].detail and "fail below 1, warn below 5 GiB" in checks[1].detail  # not profiled
    assert [c.name for c in plan_checks(load_plan(plan), tmp_path, with_memory=False)][-1] == "logind RemoveIPC"


def _docker_plan(tmp_path: Path, engine: DockerEngine, image: str, **serve) -> Path:
    spec = {"kind": "docker", "image": image, "socket": str(engine.socket), "gpus": "none", "ipc": "private",
            "command": ["httpd", "-f", "-p", "{port}", "-h", "{host}"], **serve}  # fmt: skip
    phase = {"name": "c", "kind": "concurrent", "streams": 1}
    return Plan("dockerdoc", spec, [{"name": "a"}], [phase]).write(tmp_path)


@pytest.mark.slow
def test_a_docker_plan_on_the_real_engine(tmp_path: Path, docker_engine: DockerEngine, busybox_image: str) -> None:
    (tmp_path / "model").mkdir()
    plan = _docker_plan(tmp_path, docker_engine, busybox_image, mounts=["model:/models/m:ro"])
    checks = {c.name: c for c in plan_checks(load_plan(plan), tmp_path / "runs")}
    assert list(checks) == ["docker daemon", "image", "gpu runtime", "mounts", "disk", "logind RemoveIPC", "memory"]
    assert checks["docker daemon"].status == checks["image"].status == checks["mounts"].status == "ok", checks
    assert checks["gpu runtime"].status == "skipped"
    assert checks["logind RemoveIPC"].detail.startswith("the container runs as 'root'")  # busybox: no USER
    assert checks["logind RemoveIPC"].status in ("ok", "skipped")  # root is exempt, wherever logind runs
    gone = _docker_plan(tmp_path, docker_engine, "gb10-test/not-here:1", mounts=["gone:/models/g:ro"])
    checks = {c.name: c for c in plan_checks(load_plan(gone), tmp_path / "runs")}
    assert checks["image"].status == checks["mounts"].status == "fail" and failed(list(checks.values()))
    assert checks["logind RemoveIPC"].detail.startswith("the container's user (image not inspected)")


@pytest.mark.slow
def test_validate_warns_and_run_refuses_before_anything_starts(tmp_path: Path, docker_engine: DockerEngine,
                                                               capsys) -> None:  # fmt: skip
    plan = _docker_plan(tmp_path, docker_engine, "gb10-test/not-here:1", mounts=["gone:/models/g:ro"])
    assert main(["validate", str(plan)]) == 0
    out = capsys.readouterr().out
    assert "warning: this host: image: " in out and "never pulls" in out
    assert out.count(str(tmp_path / "gone")) == 1  # validate says the mount once, in its own words
    assert main(["run", str(plan), "--headless", "--out", str(tmp_path / "run")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: refused on this host before anything started:") and "Traceback" not in err
    assert f"{plan}: image: " in err and f"{plan}: mounts: read-only, missing: {tmp_path / 'gone'}" in err
    assert not (tmp_path / "run").exists()


def _found(monkeypatch, check: Check, force: bool, starting: bool) -> host_preflight.HostPreflight:
    monkeypatch.setattr(host_preflight, "plan_checks", lambda *args, **kwargs: [check])
    out = host_preflight.HostPreflight()
    host_preflight.doctor_findings(out, None, force, starting, Path("/runs"))  # type: ignore[arg-type]
    return out


def test_failures_refuse_a_start_warn_validate_and_force_runs_only_past_remove_ipc(monkeypatch) -> None:
    disk = Check("disk", "fail", "1 GiB free at /runs", "free space")
    assert _found(monkeypatch, disk, False, True).errors == ["disk: 1 GiB free at /runs; free space"]
    assert _found(monkeypatch, disk, True, True).errors == ["disk: 1 GiB free at /runs; free space"]
    assert _found(monkeypatch, disk, False, False).warnings == ["disk: 1 GiB free at /runs; free space"]
    ipc = Check("logind RemoveIPC", "fail", "RemoveIPC=yes", "set RemoveIPC=no")
    assert _found(monkeypatch, ipc, False, True).errors == ["logind RemoveIPC: RemoveIPC=yes; set RemoveIPC=no; "
                                                             "pass --force to run it anyway"]  # fmt: skip
    forced = _found(monkeypatch, ipc, True, True)
    assert forced.errors == [] and forced.warnings[0].endswith("(--force: running it anyway)")
    warn = _found(monkeypatch, Check("disk", "warn", "10 GiB free", "free space"), False, True)
    assert warn.errors == [] and warn.warnings == ["disk: 10 GiB free; free space"]
    assert _found(monkeypatch, Check("image", "ok", "x"), False, True) == host_preflight.HostPreflight()
    mounts = Check("mounts", "fail", "read-only, missing: /m", "put the model there")
    assert _found(monkeypatch, mounts, False, False).warnings == ["mounts: read-only, missing: /m; put the model there"]
