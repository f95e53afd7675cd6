"""What the watchdog measures: host memory (/proc/meminfo), memory pressure (PSI), the serve target's
memory cgroup, and the GPU through NVML.

On the GB10 the GPU has no memory of its own: CPU and GPU allocate from the same 128 GB, so
MemAvailable is the figure that matters and NVML's "device memory" is either unsupported or the host's
total. Parsing is kept apart from reading (pure `parse_*` functions); a value that cannot be read is
None, never 0. `Sampler.fast()` reads only /proc/meminfo: it is the hot path the guard polls every
100 ms near the floor.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from engine.units import GIB
from runners.host.cgroup import CGROUP_ROOT, CgroupMemory, memory_cgroup
from runners.host.meminfo import MemInfo, read_meminfo
from runners.host.psi import Pressure, read_psi

UNIFIED_TOLERANCE = 0.10  # a device total within 10% of MemTotal is the host's memory
NVML_INIT_RETRY_S = 30.0

# ---- GPU through NVML ----------------------------------------------------------------------------


@dataclass(frozen=True)
class GpuSample:
    """GPU 0 as NVML reports it. When `available` is False, `reason` says why and every value is None.

    `unified` is True when the device's memory is the host's (see `is_unified`); then `device_mem_total`
    is whatever NVML says (None when unsupported) and is not memory on top of MemTotal.
    """

    available: bool
    reason: str | None = None
    name: str | None = None
    unified: bool | None = None
    util_pct: float | None = None
    temp_c: float | None = None
    power_w: float | None = None
    sm_clock_mhz: int | None = None
    mem_clock_mhz: int | None = None
    process_mem_bytes: int | None = None  # compute + graphics processes' usedGpuMemory; None if any is unknown
    device_mem_total: int | None = None  # nvmlDeviceGetMemoryInfo().total

    @classmethod
    def unavailable(cls, reason: str) -> GpuSample:
        """N/A with its reason; every value None."""
        return cls(available=False, reason=reason)


def is_unified(mem_info_result: int | None, host_mem_total: int | None) -> bool:
    """Whether the GPU's memory is the host's: `mem_info_result` is nvmlDeviceGetMemoryInfo().total, or None
    when that call raised NVMLError_NotSupported.

    Unified when: NotSupported, or a total of 0, or |total - MemTotal| <= 10% of MemTotal. With
    `host_mem_total` unknown only the first two rules can say so; False means nothing said "unified".
    """
    if mem_info_result is None or mem_info_result == 0:
        return True
    if not host_mem_total:
        return False
    return abs(mem_info_result - host_mem_total) <= UNIFIED_TOLERANCE * host_mem_total


class _NvmlOpenError(Exception):
    """NVML could not be loaded or initialised, or has no device; the message says which."""


class NvmlSampler:
    """GPU 0 through NVML (the GB10 has one GPU; other devices are not sampled).

    Each `sample()` runs all of its NVML calls in one daemon worker thread and waits at most `timeout_s`
    for them: a driver call that hangs cannot hang the caller, nor interpreter exit (an executor's
    threads would be joined there). While such a call is still stuck, `sample()` answers N/A at once
    and starts no other thread. `nvmlInit` runs once, lazily, in that thread; if NVML is missing or
    its init fails, the sampler answers N/A and tries again at most every `init_retry_s`. A metric the
    device does not support (NVMLError) is None; the others are still filled.

    `nvml` is the `pynvml` module (nvidia-ml-py) or a stand-in with the same names; `clock` is
    monotonic seconds (injectable for tests).
    """

    def __init__(
        self,
        timeout_s: float = 0.5,
        nvml: Any = None,
        clock: Callable[[], float] = time.monotonic,
        init_retry_s: float = NVML_INIT_RETRY_S,
    ) -> None:
        self.timeout_s = timeout_s
        self.init_retry_s = init_retry_s
        self._nvml = nvml
        self._clock = clock
        self._lock = threading.Lock()
        self._handle: Any = None  # set once NVML is initialised (by the worker thread)
        self._open_failed: tuple[float, str] | None = None  # (clock time, reason)
        self._stuck: Future[GpuSample] | None = None
        self.threads_started = 0

    def sample(self, host_mem_total: int | None) -> GpuSample:
        """GPU 0 now, or N/A with the reason; never raises, never waits much longer than `timeout_s`."""
        with self._lock:
            timed_out = f"NVML did not answer within {self.timeout_s:g} s"
            if self._stuck is not None:
                if not self._stuck.done():
                    return GpuSample.unavailable(f"{timed_out} (that call is still stuck)")
                self._stuck = None
            if self._open_failed is not None:
                failed_at, reason = self._open_failed
                if self._clock() - failed_at < self.init_retry_s:
                    return GpuSample.unavailable(reason)
                self._open_failed = None
            future = self._start(host_mem_total)
            try:
                return future.result(timeout=self.timeout_s)
            except FutureTimeout:
                self._stuck = future
                return GpuSample.unavailable(timed_out)
            except _NvmlOpenError as e:
                self._open_failed = (self._clock(), str(e))
                return GpuSample.unavailable(str(e))
            except Exception as e:  # a stand-in or library bug must not take the watchdog down
                return GpuSample.unavailable(f"NVML call failed: {e!r}")

    def _start(self, host_mem_total: int | None) -> Future[GpuSample]:
        future: Future[GpuSample] = Future()

        def work() -> None:
            if not future.set_running_or_notify_cancel():
                return
            try:
                future.set_result(self._collect(host_mem_total))
            except BaseException as e:
                future.set_exception(e)

        self.threads_started += 1
        threading.Thread(target=work, name="nvml-sample", daemon=True).start()
        return future

    def _open(self) -> tuple[Any, Any]:
        """(nvml module, handle of GPU 0), initialising NVML the first time. Runs in the worker."""
        nvml = self._nvml
        if nvml is None:
            try:
                import pynvml as nvml
            except ImportError as e:
                raise _NvmlOpenError(f"NVML is not available: nvidia-ml-py is not installed ({e})") from e
            self._nvml = nvml
        if self._handle is None:
            try:
                nvml.nvmlInit()
                count = nvml.nvmlDeviceGetCount()
                if count < 1:
                    raise _NvmlOpenError("NVML found no GPU")
                self._handle = nvml.nvmlDeviceGetHandleByIndex(0)
            except nvml.NVMLError as e:
                raise _NvmlOpenError(f"NVML init failed: {e}") from e
        return nvml, self._handle

    def _collect(self, host_mem_total: int | None) -> GpuSample:
        nvml, h = self._open()

        def metric(call: Callable[..., Any], *args: Any) -> Any:
            try:
                return call(*args)
            except nvml.NVMLError:
                return None

        name = metric(nvml.nvmlDeviceGetName, h)
        if isinstance(name, bytes):
            name = name.decode(errors="replace")
        rates = metric(nvml.nvmlDeviceGetUtilizationRates, h)
        temp = metric(nvml.nvmlDeviceGetTemperature, h, nvml.NVML_TEMPERATURE_GPU)
        power_mw = metric(nvml.nvmlDeviceGetPowerUsage, h)
        sm_clock = metric(nvml.nvmlDeviceGetClockInfo, h, nvml.NVML_CLOCK_SM)
        mem_clock = metric(nvml.nvmlDeviceGetClockInfo, h, nvml.NVML_CLOCK_MEM)
        total, unified = self._memory_total(nvml, h, host_mem_total)
        return GpuSample(
            available=True,
            name=name,
            unified=unified,
            util_pct=None if rates is None else float(rates.gpu),
            temp_c=None if temp is None else float(temp),
            power_w=None if power_mw is None else power_mw / 1000.0,
            sm_clock_mhz=None if sm_clock is None else int(sm_clock),
            mem_clock_mhz=None if mem_clock is None else int(mem_clock),
            process_mem_bytes=_process_memory(nvml, h),
            device_mem_total=total,
        )

    @staticmethod
    def _memory_total(nvml: Any, h: Any, host_mem_total: int | None) -> tuple[int | None, bool | None]:
        """(device total, unified): NotSupported means unified; another error, or no host total to compare
        a non-zero device total with, leaves `unified` None (cannot tell)."""
        not_supported = getattr(nvml, "NVMLError_NotSupported", None)
        try:
            total = int(nvml.nvmlDeviceGetMemoryInfo(h).total)
        except nvml.NVMLError as e:
            if not_supported is not None and isinstance(e, not_supported):
                return None, is_unified(None, host_mem_total)
            return None, None
        if total and not host_mem_total:
            return total, None
        return total, is_unified(total, host_mem_total)


def _process_memory(nvml: Any, h: Any) -> int | None:
    """Sum of usedGpuMemory over the compute and graphics processes (a pid in both counted once).

    None when neither list can be read or any listed process's figure is unknown (NVML gives None
    where it cannot tell, as on some unified or WDDM setups): a partial sum is not the total.
    """
    by_pid: dict[Any, int | None] = {}
    answered = False
    for call in (nvml.nvmlDeviceGetComputeRunningProcesses, nvml.nvmlDeviceGetGraphicsRunningProcesses):
        try:
            processes = call(h)
        except nvml.NVMLError:
            continue
        answered = True
        for i, p in enumerate(processes):
            used = getattr(p, "usedGpuMemory", None)
            key = getattr(p, "pid", None)
            key = ("index", call, i) if key is None else key
            if by_pid.get(key) is None:
                by_pid[key] = used
    if not answered or any(v is None for v in by_pid.values()):
        return None
    return sum(int(v) for v in by_pid.values() if v is not None)


# ---- one full sample ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Sample:
    """Everything the watchdog measured at `t` (time.time()); None where a source was absent."""

    t: float
    mem: MemInfo
    psi: Pressure | None  # /proc/pressure/memory; None where PSI is disabled
    target: CgroupMemory | None  # the serve target's memory cgroup; None without a target or when gone
    gpu: GpuSample | None

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready: nested dicts, bytes as ints, plus `available_gib` (3 decimals, or None)."""
        d = asdict(self)
        available = self.mem.available
        d["available_gib"] = None if available is None else round(available / GIB, 3)
        return d


class Sampler:
    """Reads a `Sample` (`sample`) or just /proc/meminfo (`fast`, the hot path).

    The GPU is sampled at most every `gpu_every_s`; between, the last GpuSample is reused. A GPU
    sample may block for up to the NvmlSampler's timeout, so `fast()` never touches NVML.
    """

    def __init__(
        self,
        proc: Path = Path("/proc"),
        nvml: NvmlSampler | None = None,
        gpu_every_s: float = 1.0,
        cgroup_root: Path = CGROUP_ROOT,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.proc = proc
        self.nvml = nvml if nvml is not None else NvmlSampler()
        self.gpu_every_s = gpu_every_s
        self.cgroup_root = cgroup_root
        self._clock = clock
        self._gpu: tuple[float, GpuSample] | None = None  # (clock time, sample)

    def fast(self) -> MemInfo:
        """/proc/meminfo only."""
        return read_meminfo(self.proc)

    def sample(self, target_pid: int | None = None) -> Sample:
        """meminfo, memory PSI, `target_pid`'s memory cgroup (None without a pid or when it is gone), the GPU."""
        t = time.time()
        mem = read_meminfo(self.proc)
        psi = read_psi(self.proc / "pressure" / "memory")
        target = None
        if target_pid is not None:
            group = memory_cgroup(target_pid, proc=self.proc, root=self.cgroup_root)
            target = group.read() if group is not None else None
        return Sample(t=t, mem=mem, psi=psi, target=target, gpu=self._gpu_sample(mem.total))

    def _gpu_sample(self, host_mem_total: int | None) -> GpuSample:
        now = self._clock()
        if self._gpu is not None and now - self._gpu[0] < self.gpu_every_s:
            return self._gpu[1]
        gpu = self.nvml.sample(host_mem_total)
        self._gpu = (now, gpu)
        return gpu
