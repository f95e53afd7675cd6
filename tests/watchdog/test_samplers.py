"""The watchdog's samplers (runners/watchdog/samplers.py): a full sample from fake /proc and cgroup trees under
tmp_path and from the real machine, and NVML through a fake module (unified detection, unsupported metrics, a hung
driver call, a failed init). /proc/meminfo, PSI and cgroups alone are tested in tests/host."""

from __future__ import annotations

import json
import os
import threading
import time
from pathlib import Path
from types import SimpleNamespace

import pytest

from engine.units import GIB
from runners.host.cgroup import CgroupMemory, memory_cgroup
from runners.host.meminfo import MemInfo, parse_meminfo
from runners.host.psi import Pressure, parse_psi
from runners.watchdog.samplers import GpuSample, NvmlSampler, Sample, Sampler, is_unified
from tests.support.fake_host import HOST_128G, KIB, MEMINFO, PSI, fake_proc
from tests.support.fake_nvml import FakeNvml, NVMLError, NVMLError_NotSupported


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


@pytest.mark.serial  # 50-400 ms bounds
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
