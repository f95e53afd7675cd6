"""Timing primitives for the kernel bench: per-call times, cold caches, cache size and copy bandwidth.

On CUDA every call is timed with a pair of CUDA events recorded around it and read after one final synchronize.
Before each timed call two things go on the stream: a read of a buffer twice the L2 (`L2Flush`: the call finds
none of its operands in L2, and a read leaves no dirty lines to be written back while it runs), then a GPU sleep
longer than the host takes to issue the call and its events (`launch_lead_us`), so the GPU is still busy when the
start event is queued and the events bracket the kernel, not the Python that launches it. How long the host took
per call is kept too (`host_us`: for the CuTe kernels that is the DSL's launch path). Elsewhere calls are timed
with the wall clock. On every device the caller also rotates through enough copies of the inputs that together
they are at least 3× the last-level cache, so no call finds its operands cached.
"""

from __future__ import annotations

import dataclasses
import math
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch

COLD_FACTOR = 3  # rotating buffers together cover at least this many times the cache
FLUSH_FACTOR = 2  # the L2 flush reads a buffer this many times the L2
MIN_LEAD_US = 100.0  # the GPU sleeps at least this long before each timed call
LEAD_FACTOR = 3.0  # ... and at least this many times the slowest host-side issue of a warm-up call
SLEEP_CYCLES_PER_US = 3000  # torch.cuda._sleep counts SM cycles: at clocks up to 3 GHz the sleep lasts the lead
_SYS_CACHE = Path("/sys/devices/system/cpu/cpu0/cache")


@dataclass(frozen=True)
class Timing:
    """Per-call times of one kernel in microseconds, summarised."""

    median_us: float
    p10_us: float
    p90_us: float
    calls: int
    host_us: float | None = None  # CUDA: median host time to issue one call (the Python launch path)
    launch_hidden: bool | None = None  # CUDA: every call was issued within the GPU sleep before its start event


def summarise(times_us: list[float]) -> Timing:
    """Median, p10 and p90 of per-call times (inclusive quantiles; one sample gives itself for all three)."""
    if not times_us:
        raise ValueError("no timed calls to summarise")
    if len(times_us) == 1:
        return Timing(times_us[0], times_us[0], times_us[0], 1)
    deciles = statistics.quantiles(times_us, n=10, method="inclusive")
    return Timing(statistics.median(times_us), deciles[0], deciles[-1], len(times_us))


def time_calls(call: Callable[[int], object], iters: int, warmup: int, device: torch.device) -> Timing:
    """Run call(i) for `warmup` then `iters` iterations (i counts from 0) and time each timed call.

    On CUDA the timed calls run with a cold L2 and their launch overhead hidden (see the module docstring).
    """
    if device.type == "cuda":
        return _time_cuda_calls(call, iters, warmup, device)
    for i in range(warmup):
        call(i)
    times = []
    for i in range(iters):
        started = time.perf_counter_ns()
        call(warmup + i)
        times.append((time.perf_counter_ns() - started) / 1000.0)
    return summarise(times)


def launch_lead_us(warmup_host_us: list[float]) -> float:
    """How long the GPU sleeps before each timed call: LEAD_FACTOR × the slowest warm-up issue, at least MIN_LEAD_US.

    The first warm-up call is left out when there are others: it includes compiling the kernel.
    """
    steady = warmup_host_us[1:] or warmup_host_us
    return max(MIN_LEAD_US, LEAD_FACTOR * max(steady, default=0.0))


class L2Flush:
    """A buffer of FLUSH_FACTOR × the L2, summed on the current stream before each timed call."""

    def __init__(self, device: torch.device) -> None:
        size = max(FLUSH_FACTOR * cache_bytes(device), 64 << 20)
        self.nbytes = size
        self.buffer = torch.ones(size // 4, dtype=torch.float32, device=device)
        self.total = torch.empty((), dtype=torch.float32, device=device)

    def __call__(self) -> None:
        torch.sum(self.buffer, dim=0, out=self.total)  # torch 2.11 takes `out` only with `dim`


def _gpu_sleep(us: float) -> None:
    """Keep the GPU busy for at least `us` µs at clocks up to 3 GHz (no-op where torch lacks _sleep)."""
    sleep = getattr(torch.cuda, "_sleep", None)
    if sleep is not None:
        sleep(int(us * SLEEP_CYCLES_PER_US))


def _time_cuda_calls(call: Callable[[int], object], iters: int, warmup: int, device: torch.device) -> Timing:
    with torch.cuda.device(device):
        warm_host = []
        for i in range(warmup):
            torch.cuda.synchronize(device)  # host time of the issue alone, not of waiting for a full queue
            started = time.perf_counter_ns()
            call(i)
            warm_host.append((time.perf_counter_ns() - started) / 1000.0)
        lead = launch_lead_us(warm_host)
        flush = L2Flush(device)
        events = [(torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)) for _ in range(iters)]
        host = []
        torch.cuda.synchronize(device)
        for i, (start, end) in enumerate(events):
            flush()
            _gpu_sleep(lead)
            started = time.perf_counter_ns()
            start.record()
            call(warmup + i)
            end.record()
            host.append((time.perf_counter_ns() - started) / 1000.0)
            torch.cuda.synchronize(device)  # the next flush and sleep start on an idle GPU: each call gets the lead
        summary = summarise([start.elapsed_time(end) * 1000.0 for start, end in events])
    hidden = hasattr(torch.cuda, "_sleep") and max(host) < lead
    return dataclasses.replace(summary, host_us=statistics.median(host), launch_hidden=hidden)


def cache_bytes(device: torch.device) -> int:
    """The cache a cold-cache bench must defeat: the GPU's L2, or the CPU's largest cache level (from sysfs)."""
    if device.type == "cuda":
        return int(torch.cuda.get_device_properties(device).L2_cache_size)
    sizes = [_parse_size(p.read_text()) for p in sorted(_SYS_CACHE.glob("index*/size"))] if _SYS_CACHE.exists() else []
    return max(sizes, default=64 << 20)  # unknown: assume a large 64 MiB last-level cache


def _parse_size(text: str) -> int:
    text = text.strip().upper()
    units = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30}
    return int(text[:-1]) * units[text[-1]] if text and text[-1] in units else int(text or 0)


def rotation_count(payload_bytes: int, cache: int) -> int:
    """How many copies of a payload to rotate through so they cover COLD_FACTOR × cache (at least one)."""
    return max(1, math.ceil(COLD_FACTOR * cache / max(payload_bytes, 1)))


def copy_bandwidth_gbs(device: torch.device, cache: int, iters: int = 10) -> float:
    """Measured device copy bandwidth in GB/s (bytes read + written per second), over a buffer ≥ 3× the cache.

    On CUDA the buffer is at least 1 GiB, timed as `time_calls` times a kernel; on CPU at least 256 MiB.
    """
    floor = (1 << 30) if device.type == "cuda" else (256 << 20)
    n = max(floor, COLD_FACTOR * cache) // 4
    src = torch.ones(n, dtype=torch.float32, device=device)
    dst = torch.empty_like(src)
    timing = time_calls(lambda _: dst.copy_(src), iters, 2, device)
    return 2 * src.numel() * 4 / (timing.median_us * 1e-6) / 1e9
