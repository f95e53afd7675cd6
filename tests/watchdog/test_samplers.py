"""The watchdog's samplers: /proc/meminfo, PSI and memory cgroups in fake trees under tmp_path, the real
machine's /proc, and NVML through a fake module (unified detection, unsupported metrics, a hung driver
call, a failed init)."""

from __future__ import annotations

import json
import os
import threading
import time
from pathlib import Path
from types import SimpleNamespace

import pytest

from engine.units import GIB
from runners.host.cgroup import CgroupMemory, MemoryCgroup, memory_cgroup
from runners.host.meminfo import MemInfo, parse_meminfo, read_meminfo
from runners.host.psi import Pressure, parse_psi, read_psi
from runners.watchdog.samplers import GpuSample, NvmlSampler, Sample, Sampler, is_unified

KIB = 1024

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


# ---- /proc/meminfo --------------------------------------------------------------------------------


def test_meminfo_fields_are_bytes() -> None:
    """Every field is the kB figure times 1024; Hugetlb is taken as the kernel gives it."""
    info = parse_meminfo(MEMINFO)
    assert info == MemInfo(
        total=131072000 * KIB,
        available=24268380 * KIB,
        swap_free=8000000 * KIB,
        anon=90000000 * KIB,
        shmem=500000 * KIB,
        hugetlb=16384 * KIB,
        free=1000000 * KIB,
    )


def test_meminfo_without_memavailable_is_not_estimated() -> None:
    """An old kernel without MemAvailable: available None, even with MemFree and Buffers to hand."""
    info = parse_meminfo(MEMINFO.replace("MemAvailable:   24268380 kB\n", ""))
    assert info.available is None
    assert info.total == 131072000 * KIB


def test_meminfo_hugetlb_falls_back_to_the_default_pool() -> None:
    """No Hugetlb line: HugePages_Total * Hugepagesize; without those either, None."""
    no_hugetlb = MEMINFO.replace("Hugetlb:           16384 kB\n", "")
    assert parse_meminfo(no_hugetlb).hugetlb == 4 * 2048 * KIB
    assert parse_meminfo(no_hugetlb.replace("Hugepagesize:       2048 kB\n", "")).hugetlb is None


def test_meminfo_odd_formats() -> None:
    """Extra spaces and a bare number parse; a foreign unit, garbage or a negative value is None, not 0."""
    text = (
        "garbage without a colon\n"
        "MemTotal :    1000   kB  \n"
        "MemAvailable: 500\n"
        "SwapFree: lots kB\n"
        "AnonPages: 12 MB\n"
        "Shmem: -5 kB\n"
        ": 7 kB\n"
        "Hugetlb:\n"
    )
    info = parse_meminfo(text)
    assert info == MemInfo(total=1000 * KIB, available=500 * KIB)
    assert parse_meminfo("") == MemInfo()
    assert parse_meminfo("\x00\xff:::\n²: 3 kB\nMemTotal: ³ kB\n") == MemInfo()


def test_read_meminfo_fake_and_missing(tmp_path: Path) -> None:
    """read_meminfo reads proc/meminfo; without the file every field is None."""
    (tmp_path / "meminfo").write_text(MEMINFO)
    assert read_meminfo(tmp_path).available == 24268380 * KIB
    assert read_meminfo(tmp_path / "nowhere") == MemInfo()


def test_read_meminfo_real_machine() -> None:
    """The real /proc: total and available are positive and available <= total."""
    info = read_meminfo()
    assert info.total is not None and info.total > 0
    assert info.available is not None and 0 < info.available <= info.total


# ---- PSI ------------------------------------------------------------------------------------------


def test_psi_some_and_full() -> None:
    """Both lines: averages as floats, totals as ints."""
    assert parse_psi(PSI) == Pressure(1.5, 0.75, 0.25, 123456, 0.5, 0.2, 0.1, 6543)


def test_psi_without_full_line_and_garbage() -> None:
    """No full line (older kernels, cpu): full_* None; garbage tokens leave their field None."""
    only_some = parse_psi(PSI.splitlines()[0])
    assert only_some.some_avg10 == 1.5 and only_some.some_total == 123456
    assert (only_some.full_avg10, only_some.full_total) == (None, None)
    odd = parse_psi("some avg10=abc avg60=nan avg300=-1 total=12.5 bogus=3 avg10\nfull avg10=2.5\nnoise\n")
    assert odd == Pressure(full_avg10=2.5)
    assert parse_psi("") == Pressure()


def test_read_psi_absent_file_is_none(tmp_path: Path) -> None:
    """No PSI file (PSI disabled) is None; a directory where a file should be (unreadable) is None too."""
    assert read_psi(tmp_path / "pressure" / "memory") is None
    (tmp_path / "memory").mkdir()
    assert read_psi(tmp_path / "memory") is None
    (tmp_path / "cpu").write_text(PSI)
    assert read_psi(tmp_path / "cpu") == parse_psi(PSI)


# ---- memory cgroups -------------------------------------------------------------------------------


def fake_proc(tmp_path: Path, pid: int, cgroup_text: str) -> Path:
    """proc/<pid>/cgroup plus proc/meminfo under tmp_path; returns the proc root."""
    proc = tmp_path / "proc"
    (proc / str(pid)).mkdir(parents=True)
    (proc / str(pid) / "cgroup").write_text(cgroup_text)
    (proc / "meminfo").write_text(MEMINFO)
    return proc


def test_cgroup_v1_read(tmp_path: Path) -> None:
    """v1: usage_in_bytes, limit_in_bytes, oom_control; no PSI; an unlimited limit is None."""
    proc = fake_proc(tmp_path, 41, "4:memory:/docker/abc\n")
    root = tmp_path / "cgroup"
    group = root / "memory" / "docker" / "abc"
    group.mkdir(parents=True)
    (group / "memory.usage_in_bytes").write_text("1048576\n")
    (group / "memory.limit_in_bytes").write_text("17179869184\n")
    (group / "memory.oom_control").write_text("oom_kill_disable 0\nunder_oom 0\noom_kill 2\n")
    found = memory_cgroup(41, proc=proc, root=root)
    assert found == MemoryCgroup(group, 1)
    assert found.read() == CgroupMemory(1, 1048576, 16 * GIB, 2, None)
    (group / "memory.limit_in_bytes").write_text("9223372036854771712\n")
    assert found.read().limit_bytes is None
    (group / "memory.usage_in_bytes").unlink()
    assert found.read().usage_bytes is None


def test_cgroup_v2_read(tmp_path: Path) -> None:
    """v2: memory.current, memory.max ("max" is None), memory.events, memory.pressure (None when absent)."""
    proc = fake_proc(tmp_path, 42, "0::/system.slice/docker-abc.scope\n")
    root = tmp_path / "cgroup"
    group = root / "system.slice" / "docker-abc.scope"
    group.mkdir(parents=True)
    (group / "memory.events").write_text("low 0\nhigh 0\nmax 3\noom 1\noom_kill 1\noom_group_kill 0\n")
    (group / "memory.current").write_text("2097152\n")
    (group / "memory.max").write_text("max\n")
    found = memory_cgroup(42, proc=proc, root=root)
    assert found is not None
    assert found.read() == CgroupMemory(2, 2097152, None, 1, None)
    (group / "memory.max").write_text("8589934592\n")
    (group / "memory.pressure").write_text(PSI)
    assert found.read() == CgroupMemory(2, 2097152, 8 * GIB, 1, parse_psi(PSI))


def test_sampler_reads_the_targets_cgroup_and_psi(tmp_path: Path) -> None:
    """A full sample from fake trees: meminfo, /proc/pressure/memory and the target's cgroup."""
    proc = fake_proc(tmp_path, 43, "0::/run.scope\n")
    (proc / "pressure").mkdir()
    (proc / "pressure" / "memory").write_text(PSI)
    root = tmp_path / "cgroup"
    (root / "run.scope").mkdir(parents=True)
    (root / "run.scope" / "memory.events").write_text("oom_kill 0\n")
    (root / "run.scope" / "memory.current").write_text("4096\n")
    sampler = Sampler(proc=proc, nvml=NvmlSampler(nvml=FakeNvml()), cgroup_root=root)
    s = sampler.sample(43)
    assert s.mem == parse_meminfo(MEMINFO)
    assert s.psi == parse_psi(PSI)
    assert s.target == CgroupMemory(2, 4096, None, 0, None)
    assert sampler.sample().target is None


def test_sampler_gone_target_and_no_psi(tmp_path: Path) -> None:
    """A target pid whose /proc entry is gone gives target None; no /proc/pressure gives psi None."""
    proc = fake_proc(tmp_path, 44, "4:memory:/a\n")
    sampler = Sampler(proc=proc, nvml=NvmlSampler(nvml=FakeNvml()), cgroup_root=tmp_path / "cgroup")
    s = sampler.sample(4444)
    assert s.target is None and s.psi is None
    assert s.mem.total == 131072000 * KIB


def test_sampler_real_machine() -> None:
    """Sampler().sample(own pid) on this machine: meminfo filled; GPU N/A means a reason and no values."""
    sampler = Sampler()
    s = sampler.sample(os.getpid())
    assert s.mem.total and s.mem.available and s.mem.available <= s.mem.total
    if memory_cgroup(os.getpid()) is not None:
        assert s.target is not None and s.target.usage_bytes is not None and s.target.usage_bytes > 0
    assert s.gpu is not None
    if not s.gpu.available:
        assert s.gpu.reason
        assert s.gpu == GpuSample.unavailable(s.gpu.reason)
    else:
        assert s.gpu.name
    json.dumps(s.as_dict())
    assert sampler.fast().total == s.mem.total


def test_sample_as_dict() -> None:
    """as_dict nests the dataclasses, keeps bytes as ints and adds available_gib (3 decimals or None)."""
    mem = MemInfo(total=128 * GIB, available=int(24.1234 * GIB))
    s = Sample(t=1.5, mem=mem, psi=Pressure(full_avg10=2.0), target=None, gpu=GpuSample.unavailable("none"))
    d = json.loads(json.dumps(s.as_dict()))
    assert d["available_gib"] == 24.123
    assert d["mem"]["total"] == 128 * GIB and isinstance(d["mem"]["total"], int)
    assert d["psi"]["full_avg10"] == 2.0 and d["target"] is None
    assert d["gpu"] == {**{k: None for k in d["gpu"]}, "available": False, "reason": "none"}
    assert Sample(t=0.0, mem=MemInfo(), psi=None, target=None, gpu=None).as_dict()["available_gib"] is None


def test_sampler_reuses_the_gpu_sample_between_intervals(tmp_path: Path) -> None:
    """The GPU is sampled at most every gpu_every_s; meminfo is read on every sample and by fast()."""
    proc = fake_proc(tmp_path, 45, "")
    fake = FakeNvml()
    now = [100.0]
    sampler = Sampler(proc=proc, nvml=NvmlSampler(nvml=fake), gpu_every_s=1.0, clock=lambda: now[0])
    first = sampler.sample()
    now[0] += 0.5
    assert sampler.sample().gpu is first.gpu
    assert fake.calls["nvmlDeviceGetName"] == 1
    now[0] += 0.6
    sampler.sample()
    assert fake.calls["nvmlDeviceGetName"] == 2
    (proc / "meminfo").write_text("MemTotal: 10 kB\nMemAvailable: 5 kB\n")
    assert sampler.fast() == MemInfo(total=10 * KIB, available=5 * KIB)
    assert fake.calls["nvmlDeviceGetName"] == 2


# ---- NVML -----------------------------------------------------------------------------------------


class NVMLError(Exception):
    """Stands in for pynvml.NVMLError."""


class NVMLError_NotSupported(NVMLError):
    """Stands in for pynvml.NVMLError_NotSupported."""


class FakeNvml:
    """A pynvml stand-in: one device; `fail` maps a function name to the exception it raises; `block`
    makes nvmlDeviceGetName wait on an event (a hung driver call)."""

    NVMLError = NVMLError
    NVMLError_NotSupported = NVMLError_NotSupported
    NVML_TEMPERATURE_GPU = 0
    NVML_CLOCK_SM = 1
    NVML_CLOCK_MEM = 2

    def __init__(self, total: int | None = 128 * GIB, processes: list | None = None) -> None:
        self.total = total
        self.processes = processes if processes is not None else []
        self.fail: dict[str, Exception] = {}
        self.block: threading.Event | None = None
        self.calls: dict[str, int] = {}

    def _call(self, name: str) -> None:
        self.calls[name] = self.calls.get(name, 0) + 1
        if name in self.fail:
            raise self.fail[name]

    def nvmlInit(self) -> None:
        self._call("nvmlInit")

    def nvmlDeviceGetCount(self) -> int:
        self._call("nvmlDeviceGetCount")
        return 1

    def nvmlDeviceGetHandleByIndex(self, i: int) -> str:
        self._call("nvmlDeviceGetHandleByIndex")
        return f"gpu{i}"

    def nvmlDeviceGetName(self, h: str) -> bytes:
        self._call("nvmlDeviceGetName")
        if self.block is not None:
            self.block.wait(5.0)
        return b"NVIDIA GB10"

    def nvmlDeviceGetUtilizationRates(self, h: str) -> SimpleNamespace:
        self._call("nvmlDeviceGetUtilizationRates")
        return SimpleNamespace(gpu=87, memory=10)

    def nvmlDeviceGetTemperature(self, h: str, sensor: int) -> int:
        self._call("nvmlDeviceGetTemperature")
        assert sensor == self.NVML_TEMPERATURE_GPU
        return 61

    def nvmlDeviceGetPowerUsage(self, h: str) -> int:
        self._call("nvmlDeviceGetPowerUsage")
        return 45250

    def nvmlDeviceGetClockInfo(self, h: str, clock: int) -> int:
        self._call("nvmlDeviceGetClockInfo")
        return {self.NVML_CLOCK_SM: 2418, self.NVML_CLOCK_MEM: 8533}[clock]

    def nvmlDeviceGetComputeRunningProcesses(self, h: str) -> list:
        self._call("nvmlDeviceGetComputeRunningProcesses")
        return self.processes

    def nvmlDeviceGetGraphicsRunningProcesses(self, h: str) -> list:
        self._call("nvmlDeviceGetGraphicsRunningProcesses")
        return []

    def nvmlDeviceGetMemoryInfo(self, h: str) -> SimpleNamespace:
        self._call("nvmlDeviceGetMemoryInfo")
        return SimpleNamespace(total=self.total, free=0, used=0)


HOST_128G = 128 * 10**9


def test_is_unified_rules() -> None:
    """NotSupported (None), a total of 0, or within 10% of MemTotal: unified; a far-off total: not."""
    assert is_unified(None, HOST_128G)
    assert is_unified(0, HOST_128G)
    assert is_unified(int(HOST_128G * 0.91), HOST_128G)
    assert not is_unified(int(HOST_128G * 0.89), HOST_128G)
    assert not is_unified(80 * GIB, 24 * GIB)
    assert not is_unified(80 * GIB, None)


def test_nvml_full_sample_with_total_near_memtotal() -> None:
    """Every metric filled and converted (mW -> W, bytes name -> str); total ≈ MemTotal is unified."""
    fake = FakeNvml(total=HOST_128G - 3 * 10**9)
    gpu = NvmlSampler(nvml=fake).sample(HOST_128G)
    assert gpu == GpuSample(
        available=True,
        name="NVIDIA GB10",
        unified=True,
        util_pct=87.0,
        temp_c=61.0,
        power_w=45.25,
        sm_clock_mhz=2418,
        mem_clock_mhz=8533,
        process_mem_bytes=0,
        device_mem_total=HOST_128G - 3 * 10**9,
    )


def test_nvml_memory_info_not_supported_is_unified() -> None:
    """NotSupported on nvmlDeviceGetMemoryInfo: unified True, device total None."""
    fake = FakeNvml()
    fake.fail["nvmlDeviceGetMemoryInfo"] = NVMLError_NotSupported("Not Supported")
    gpu = NvmlSampler(nvml=fake).sample(HOST_128G)
    assert gpu.available and gpu.unified is True and gpu.device_mem_total is None


def test_nvml_discrete_device_and_unknown_host() -> None:
    """An 80 GB device on a 24 GB host is discrete; with the host total unknown it cannot tell (None)."""
    gpu = NvmlSampler(nvml=FakeNvml(total=80 * GIB)).sample(24 * GIB)
    assert gpu.unified is False and gpu.device_mem_total == 80 * GIB
    assert NvmlSampler(nvml=FakeNvml(total=80 * GIB)).sample(None).unified is None


def test_nvml_unsupported_metric_is_none_others_filled() -> None:
    """Power raising NVMLError leaves power None; utilisation, temperature and clocks are still read."""
    fake = FakeNvml()
    fake.fail["nvmlDeviceGetPowerUsage"] = NVMLError_NotSupported("Not Supported")
    fake.fail["nvmlDeviceGetMemoryInfo"] = NVMLError("Unknown Error")
    gpu = NvmlSampler(nvml=fake).sample(HOST_128G)
    assert gpu.available and gpu.power_w is None
    assert (gpu.util_pct, gpu.temp_c, gpu.sm_clock_mhz, gpu.mem_clock_mhz) == (87.0, 61.0, 2418, 8533)
    assert gpu.unified is None  # an error other than NotSupported says nothing about the memory


def test_nvml_process_memory_sum() -> None:
    """usedGpuMemory summed over processes; one unknown (None) entry makes the sum unknown, not partial."""
    known = [SimpleNamespace(pid=1, usedGpuMemory=GIB), SimpleNamespace(pid=2, usedGpuMemory=2 * GIB)]
    assert NvmlSampler(nvml=FakeNvml(processes=known)).sample(HOST_128G).process_mem_bytes == 3 * GIB
    with_none = [*known, SimpleNamespace(pid=3, usedGpuMemory=None)]
    assert NvmlSampler(nvml=FakeNvml(processes=with_none)).sample(HOST_128G).process_mem_bytes is None
    failing = FakeNvml(processes=known)
    failing.fail["nvmlDeviceGetComputeRunningProcesses"] = NVMLError_NotSupported("Not Supported")
    failing.fail["nvmlDeviceGetGraphicsRunningProcesses"] = NVMLError_NotSupported("Not Supported")
    assert NvmlSampler(nvml=failing).sample(HOST_128G).process_mem_bytes is None


def test_nvml_hung_call_times_out_without_piling_up_threads() -> None:
    """A call that hangs: N/A within ~timeout; while it is stuck, samples answer at once with no new thread."""
    fake = FakeNvml()
    fake.block = threading.Event()
    sampler = NvmlSampler(timeout_s=0.2, nvml=fake)
    try:
        t0 = time.monotonic()
        gpu = sampler.sample(HOST_128G)
        assert time.monotonic() - t0 < 0.2 + 0.2
        assert gpu == GpuSample.unavailable("NVML did not answer within 0.2 s")
        t0 = time.monotonic()
        again = sampler.sample(HOST_128G)
        assert time.monotonic() - t0 < 0.05
        assert not again.available and "did not answer within 0.2 s" in (again.reason or "")
        assert sampler.threads_started == 1
        assert fake.calls["nvmlDeviceGetName"] == 1
        assert sum(t.name == "nvml-sample" for t in threading.enumerate()) == 1
    finally:
        fake.block.set()
    deadline = time.monotonic() + 2.0
    while any(t.name == "nvml-sample" for t in threading.enumerate()) and time.monotonic() < deadline:
        time.sleep(0.01)
    fake.block = None
    recovered = sampler.sample(HOST_128G)
    assert recovered.available and recovered.name == "NVIDIA GB10"
    assert sampler.threads_started == 2


def test_nvml_init_failure_is_not_retried_within_30_s() -> None:
    """nvmlInit raising: N/A with the reason; no new init attempt until 30 s have passed on the clock."""
    fake = FakeNvml()
    fake.fail["nvmlInit"] = NVMLError("Driver Not Loaded")
    now = [1000.0]
    sampler = NvmlSampler(nvml=fake, clock=lambda: now[0])
    gpu = sampler.sample(HOST_128G)
    assert gpu == GpuSample.unavailable("NVML init failed: Driver Not Loaded")
    now[0] += 29.0
    assert sampler.sample(HOST_128G) == gpu
    assert fake.calls["nvmlInit"] == 1 and sampler.threads_started == 1
    del fake.fail["nvmlInit"]
    now[0] += 1.5
    assert sampler.sample(HOST_128G).available
    assert fake.calls["nvmlInit"] == 2
    sampler.sample(HOST_128G)
    assert fake.calls["nvmlInit"] == 2  # initialised once


def test_nvml_missing_module_is_unavailable(monkeypatch: pytest.MonkeyPatch) -> None:
    """pynvml not importable: N/A saying nvidia-ml-py is missing, every value None."""
    import sys

    monkeypatch.setitem(sys.modules, "pynvml", None)  # makes `import pynvml` raise ImportError
    gpu = NvmlSampler().sample(HOST_128G)
    assert not gpu.available and "nvidia-ml-py" in (gpu.reason or "")
    assert gpu == GpuSample.unavailable(gpu.reason or "")
