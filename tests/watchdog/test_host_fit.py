"""Floors that this host's memory can never clear are refused before a run starts, not after a 600 s wait."""

from __future__ import annotations

from pathlib import Path

import pytest

from console.cli import main
from engine.units import GIB
from runners.host.meminfo import MemInfo, read_meminfo
from runners.plan.sections import WatchdogSpec
from runners.run.runs import create_run
from runners.watchdog.host_fit import floor_fit
from tests.support.plans import write_plan

HOST = MemInfo(total=24 * GIB, available=20 * GIB)


def test_floors_at_or_above_memtotal_are_an_error_naming_each_field() -> None:
    fit = floor_fit(WatchdogSpec(warn_gib=30, abort_gib=24, kill_gib=2), HOST)
    [error] = fit.errors
    assert error.startswith("watchdog.warn_gib = 30, watchdog.abort_gib = 24: not below this host's MemTotal (24 GiB)")
    assert "restart_wait_s = 600 s" in error and fit.warnings == []


def test_a_warn_floor_above_memavailable_now_is_a_warning() -> None:
    fit = floor_fit(WatchdogSpec(warn_gib=21.5, abort_gib=10, kill_gib=5), HOST)
    assert fit.errors == [] and fit.warnings == [
        "watchdog.warn_gib = 21.5: MemAvailable is 20 GiB now, below it; the first start waits up to "
        "watchdog.restart_wait_s = 600 s for memory to rise above WARN"
    ]


@pytest.mark.parametrize(
    "spec, meminfo",
    [(WatchdogSpec(), HOST), (WatchdogSpec(warn_gib=3, abort_gib=2, kill_gib=1), HOST),
     (WatchdogSpec(warn_gib=300, abort_gib=200, kill_gib=100), MemInfo())],
)  # fmt: skip
def test_floors_sized_from_the_host_floors_that_fit_and_an_unreadable_host_give_nothing(spec, meminfo) -> None:
    assert floor_fit(spec, meminfo) == floor_fit(WatchdogSpec(), HOST)


def _huge_floors(plan: Path) -> None:
    total = read_meminfo().total
    assert total is not None, "this test reads the real /proc/meminfo"
    warn = total / GIB + 100
    plan.write_text(plan.read_text() + f"\n[watchdog]\nwarn_gib = {warn}\nabort_gib = {warn - 1}\nkill_gib = 1\n")


def test_validate_and_run_refuse_floors_above_this_host(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    plan = write_plan(tmp_path)
    _huge_floors(plan)
    assert main(["validate", str(plan)]) == 2
    err = capsys.readouterr().err
    assert f"{plan}: watchdog.warn_gib = " in err and "not below this host's MemTotal" in err
    assert main(["run", str(plan), "--headless", "--out", str(tmp_path / "run")]) == 2
    assert "not below this host's MemTotal" in capsys.readouterr().err
    assert not (tmp_path / "run").exists()


def test_resume_refuses_them_too(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    run = create_run(write_plan(tmp_path), tmp_path / "run", tmp_path)
    _huge_floors(run.plan_toml)  # the run's own copy, as a host with less memory would see it
    before = {p.name: p.read_bytes() for p in run.root.iterdir() if p.is_file()}
    assert main(["run", "--resume", str(run.root), "--headless"]) == 2
    assert f"{run.plan_toml}: watchdog.warn_gib = " in capsys.readouterr().err
    assert {p.name: p.read_bytes() for p in run.root.iterdir() if p.is_file()} == before  # nothing started
