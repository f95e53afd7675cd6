"""Per-kernel mean durations from the profiler traces a run captured.

Sources, per done step of an arm (any mode; profiled steps are supplementary):
- `kernel_times.json` in the step directory: `{"kernels": {"<name>": {"mean_us": .., "count": ..}}}`,
  for timings summarised elsewhere (nsys exports, region timers);
- Chrome traces (`*.json`, `*.json.gz`) under the step's `profile/` directory and the trace the
  target named in phase.json, as torch's profiler writes them: complete events (`"ph": "X"`) with
  `dur` in µs. GPU kernels (`cat` "kernel") are used when a trace has any; a CPU-only trace falls
  back to operator events (`cat` "cpu_op"), so the embedded engine on CPU still yields a table.
Means are pooled over every occurrence (weighted by count). A trace that cannot be read, or is
larger than MAX_TRACE_BYTES once decompressed (a trace is parsed in memory, and on a GB10 host
memory is the GPU's), is skipped and named in the notes that become report limitations.
"""

from __future__ import annotations

import gzip
import math
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

import orjson

from runners.evidence.step_files import phase_record, section
from runners.plan.model import Plan
from runners.run.files import read_json
from runners.run.rundir import RunDir

MAX_TRACE_BYTES = 256 << 20
FRONTEND_MARK = ".async_llm."  # vLLM's API-server trace: its Python, not the kernels (read only when alone)
GPU_CATEGORIES = frozenset({"kernel", "Kernel", "gpu_op"})
CPU_CATEGORIES = frozenset({"cpu_op", "operator"})


@dataclass(frozen=True)
class KernelTime:
    """Mean duration of one kernel (or CPU operator) over `count` occurrences; `source` says which."""

    name: str
    mean_us: float
    count: int
    source: str  # "gpu" | "cpu" | "summary"


def load_chrome_trace(path: Path) -> tuple[dict | None, str | None]:
    """The trace as a dict, or None and why not. At most MAX_TRACE_BYTES are read (after decompression)."""
    too_big = f"is over the {MAX_TRACE_BYTES >> 20} MiB limit for parsing in memory"
    try:
        if path.stat().st_size > MAX_TRACE_BYTES:
            return None, too_big
        with gzip.open(path, "rb") if path.suffix == ".gz" else open(path, "rb") as fh:
            raw = fh.read(MAX_TRACE_BYTES + 1)
        if len(raw) > MAX_TRACE_BYTES:
            return None, too_big
        data = orjson.loads(raw)
    except (OSError, EOFError, orjson.JSONDecodeError) as exc:
        return None, f"cannot be read: {exc}"
    return (data, None) if isinstance(data, dict) else (None, "is not a Chrome trace (no JSON object)")


def trace_kernel_times(trace: dict) -> dict[str, tuple[float, int, str]]:
    """{name: (total µs, count, "gpu"|"cpu")} of a Chrome trace's complete events (rules in the module doc)."""
    events = trace.get("traceEvents")
    if not isinstance(events, list):
        return {}
    gpu: dict[str, list[float]] = defaultdict(list)
    cpu: dict[str, list[float]] = defaultdict(list)
    for e in events:
        if not isinstance(e, dict) or e.get("ph") != "X":
            continue
        dur = e.get("dur")
        if not isinstance(dur, (int, float)) or isinstance(dur, bool) or not math.isfinite(dur) or dur < 0:
            continue
        cat = e.get("cat")
        if cat in GPU_CATEGORIES:
            gpu[str(e.get("name"))].append(float(dur))
        elif cat in CPU_CATEGORIES:
            cpu[str(e.get("name"))].append(float(dur))
    chosen, source = (gpu, "gpu") if gpu else (cpu, "cpu")
    return {name: (math.fsum(durs), len(durs), source) for name, durs in chosen.items()}


def _summary_times(path: Path) -> dict[str, tuple[float, int, str]]:
    try:
        data = read_json(path)
    except (OSError, ValueError):
        return {}
    kernels = data.get("kernels") if isinstance(data, dict) else None
    out = {}
    for name, entry in (kernels if isinstance(kernels, dict) else {}).items():
        try:
            mean, count = float(entry["mean_us"]), int(entry["count"])
        except (KeyError, TypeError, ValueError):
            continue
        if count > 0 and math.isfinite(mean):
            out[str(name)] = (mean * count, count, "summary")
    return out


def _trace_files(step_dir: Path, record: dict) -> list[Path]:
    found = set()
    profile_dir = step_dir / "profile"
    if profile_dir.is_dir():
        found |= {p for p in profile_dir.rglob("*") if p.is_file() and p.name.endswith((".json", ".json.gz"))}
    named = section(record, "profile").get("trace")
    if isinstance(named, str) and Path(named).is_file():
        found.add(Path(named))
    kernel_side = {p for p in found if FRONTEND_MARK not in p.name}
    return sorted(kernel_side or found)


def arm_kernel_times(run: RunDir, plan: Plan, arm: str) -> tuple[dict[str, KernelTime], list[str]]:
    """Pooled per-kernel means for `arm` over every done step's summaries and traces, and notes on skipped traces."""
    totals: dict[str, list] = {}
    notes: list[str] = []
    for step in plan.steps():
        if step.arm != arm or not run.is_done(step):
            continue
        step_dir = run.step_dir(step)
        parts = [_summary_times(step_dir / "kernel_times.json")]
        for path in _trace_files(step_dir, phase_record(run, step)):
            trace, problem = load_chrome_trace(path)
            if trace is None:
                notes.append(f"trace skipped: {path}: {problem}; its kernels are missing from kernel times")
            else:
                parts.append(trace_kernel_times(trace))
        for part in parts:
            for name, (total, count, source) in part.items():
                entry = totals.setdefault(name, [0.0, 0, source])
                entry[0] += total
                entry[1] += count
    times = {name: KernelTime(name, total / count, count, source) for name, (total, count, source) in totals.items()}
    return times, notes
