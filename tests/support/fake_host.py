"""A fake host for the watchdog and runners/host: /proc trees under a test's directory (meminfo, PSI, a process's
cgroup), a guard over such a tree, and no GPU."""

from __future__ import annotations

import os
from pathlib import Path

from engine.units import GIB
from runners.host.owner import process_start_ticks
from runners.plan.load import load_plan
from runners.plan.sections import WatchdogSpec
from runners.run.rundir import create_run_dir
from runners.watchdog.guard import Guard, RunnerWatch
from runners.watchdog.heartbeat import Heartbeat
from runners.watchdog.samplers import GpuSample, Sampler
from tests.support.plans import write_plan

KIB = 1024
HOST_128G = 128 * 10**9  # a host's MemTotal in bytes

MEMINFO = """\
MemTotal:       131072000 kB
MemFree:         1000000 kB
MemAvailable:   24268380 kB
Buffers:           12345 kB
SwapTotal:       8388604 kB
SwapFree:        8000000 kB
AnonPages:      90000000 kB
Shmem:            500000 kB
HugePages_Total:       4
Hugepagesize:       2048 kB
Hugetlb:           16384 kB
"""

PSI = "some avg10=1.50 avg60=0.75 avg300=0.25 total=123456\nfull avg10=0.50 avg60=0.20 avg300=0.10 total=6543\n"

GUARD_SPEC = WatchdogSpec(warn_gib=10, abort_gib=8, kill_gib=6)


def fake_proc(tmp_path: Path, pid: int, cgroup_text: str) -> Path:
    """proc/<pid>/cgroup plus proc/meminfo (MEMINFO) under tmp_path; returns the proc root."""
    proc = tmp_path / "proc"
    (proc / str(pid)).mkdir(parents=True)
    (proc / str(pid) / "cgroup").write_text(cgroup_text)
    (proc / "meminfo").write_text(MEMINFO)
    return proc


def set_available(proc: Path, gib: float) -> None:
    """Write a /proc/meminfo with MemTotal 32 GiB and MemAvailable = `gib`."""
    (proc / "meminfo").write_text(f"MemTotal: {32 * GIB // 1024} kB\nMemAvailable: {int(gib * GIB) // 1024} kB\n")


class NoGpu:
    """Stands in for NvmlSampler: no GPU here."""

    def sample(self, host_mem_total: int | None) -> GpuSample:
        """Always N/A."""
        return GpuSample.unavailable("test: no GPU")


def make_guard(tmp_path: Path, proc: Path) -> Guard:
    """A guard (floors GUARD_SPEC) over the fake /proc `proc`, for a run of write_plan's plan under tmp_path, whose
    runner is this process (its heartbeat touched)."""
    plan = write_plan(tmp_path)
    loaded = load_plan(plan)
    run = create_run_dir(tmp_path / "run", tmp_path, loaded.source, loaded.plan.name, loaded.base_dir)
    run.runner_heartbeat.touch()
    runner = RunnerWatch(os.getpid(), process_start_ticks(os.getpid()), Heartbeat(run.runner_heartbeat))
    return Guard(run, GUARD_SPEC, runner, Sampler(proc=proc, nvml=NoGpu()))  # type: ignore[arg-type]
