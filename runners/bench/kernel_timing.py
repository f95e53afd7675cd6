"""Timing primitives for the kernel bench: per-call times, cold-cache rotation, cache size and copy bandwidth.

On CUDA every call is timed with a pair of CUDA events (recorded around the call, read after one final
synchronize); elsewhere with the wall clock. Cold L2: the caller rotates through enough copies of the
inputs that together they are at least 3× the last-level cache, so no call finds its operands cached.
"""

from __future__ import annotations

import math
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch

COLD_FACTOR = 3  # rotating buffers together cover at least this many times the cache
_SYS_CACHE = Path("/sys/devices/system/cpu/cpu0/cache")


@dataclass(frozen=True)
class Timing:
    """Per-call times of one kernel in microseconds, summarised."""

    median_us: float
    p10_us: float
    p90_us: float
    calls: int


def summarise(times_us: list[float]) -> Timing:
    """Median, p10 and p90 of per-call times (inclusive quantiles; one sample gives itself for all three)."""
    if not times_us:
        raise ValueError("no timed calls to summarise")
    if len(times_us) == 1:
        return Timing(times_us[0], times_us[0], times_us[0], 1)
    deciles = statistics.quantiles(times_us, n=10, method="inclusive")
    return Timing(statistics.median(times_us), deciles[0], deciles[-1], len(times_us))


def time_calls(call: Callable[[int], object], iters: int, warmup: int, device: torch.device) -> Timing:
    """Run call(i) for `warmup` then `iters` iterations (i counts from 0) and time each timed call."""
    for i in range(warmup):
        call(i)
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        events = [(torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)) for _ in range(iters)]
        for i, (start, end) in enumerate(events):
            start.record()
            call(warmup + i)
            end.record()
        torch.cuda.synchronize(device)
        return summarise([start.elapsed_time(end) * 1000.0 for start, end in events])
    times = []
    for i in range(iters):
        started = time.perf_counter_ns()
        call(warmup + i)
        times.append((time.perf_counter_ns() - started) / 1000.0)
    return summarise(times)


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
    """Measured device copy bandwidth in GB/s (bytes read + written per second), over a buffer ≥ 3× the cache."""
    n = max(256 << 20, COLD_FACTOR * cache) // 4
    src = torch.ones(n, dtype=torch.float32, device=device)
    dst = torch.empty_like(src)
    timing = time_calls(lambda _: dst.copy_(src), iters, 2, device)
    return 2 * src.numel() * 4 / (timing.median_us * 1e-6) / 1e9
