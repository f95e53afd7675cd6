"""The profiler's files: from the runner-owned trace directory into the step's `profile/`, then a kernel table.

vLLM writes its traces where `torch_profiler_dir` says (the `{profile_dir}` placeholder: a directory
of the serve session that the runner owns; a Docker bind mount): a worker trace per rank
(`rank0.<id>.pt.trace.json.gz`), the API server's (`*.async_llm.<id>.pt.trace.json.gz`) and the tables
it prints (`*.profiler_out.txt`). Measured here: the worker's trace lands about a third of the way into
a `/stop_profile` that then spends the rest building its table, so a stop killed at its deadline often
leaves a whole trace behind: it is kept, as "recovered after kill".

`collect` waits, bounded, until no file in the directory changes size for SETTLE_S, then moves what
appeared since the profiler started into the step. `kernel_table` reads the traces (GPU `kernel`
events, else CPU `cpu_op`s) into the step's per-kernel table.
"""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

from runners.evidence.kernel_times import FRONTEND_MARK, load_chrome_trace, trace_kernel_times
from runners.run.files import run_umask

SETTLE_S = 1.0
POLL_S = 0.25
COLLECT_DEADLINE_S = 30.0
TRACE_SUFFIXES = (".json", ".json.gz")
TABLE_ROWS = 25


@dataclass(frozen=True)
class Collected:
    """What `collect` moved into the step's profile directory, and how long it waited."""

    files: tuple[str, ...]  # paths relative to the step's profile directory
    waited_s: float
    still_changing: bool = False  # the deadline passed while a file was still growing

    @property
    def traces(self) -> tuple[str, ...]:
        """The trace files (Chrome JSON) among them."""
        return tuple(f for f in self.files if is_trace(f))


def is_trace(name: str) -> bool:
    """A Chrome trace as torch's profiler writes it (`.json`, `.json.gz`)."""
    return name.endswith(TRACE_SUFFIXES)


def snapshot(directory: Path) -> dict[str, tuple[int, int]]:
    """{relative path: (size, mtime_ns)} of every file under `directory` ({} when it does not exist)."""
    out = {}
    if not directory.is_dir():
        return out
    for path in directory.rglob("*"):
        try:
            st = path.stat()
        except OSError:  # removed while listed
            continue
        if path.is_file():
            out[str(path.relative_to(directory))] = (st.st_size, st.st_mtime_ns)
    return out


def _new(now: dict[str, tuple[int, int]], before: dict[str, tuple[int, int]]) -> dict[str, tuple[int, int]]:
    return {name: meta for name, meta in now.items() if before.get(name) != meta}


async def collect(source: Path, before: dict[str, tuple[int, int]], dest: Path,
                  deadline_s: float = COLLECT_DEADLINE_S, settle_s: float = SETTLE_S) -> Collected:  # fmt: skip
    """Wait until the files new since `before` stop changing (at most `deadline_s`), then move them to `dest`."""
    t0 = time.monotonic()
    last = await asyncio.to_thread(lambda: _new(snapshot(source), before))
    stable_since = time.monotonic()
    while time.monotonic() - stable_since < settle_s and time.monotonic() - t0 < deadline_s:
        await asyncio.sleep(POLL_S)
        now = await asyncio.to_thread(lambda: _new(snapshot(source), before))
        if now != last:
            last, stable_since = now, time.monotonic()
    still_changing = time.monotonic() - stable_since < settle_s
    moved = await asyncio.to_thread(_move, source, sorted(last), dest)
    return Collected(tuple(moved), round(time.monotonic() - t0, 3), still_changing)


def _move(source: Path, names: list[str], dest: Path) -> list[str]:
    """Move the trace files into the step, each then given the run's file mode: a container writes them under its
    own umask (often 022), and the run directory's files are not for others to read (`run_umask`)."""
    moved = []
    mode = 0o666 & ~run_umask()[0]
    for name in names:
        target = dest / name
        target.parent.mkdir(parents=True, exist_ok=True)
        try:
            shutil.move(str(source / name), str(target))
        except OSError:  # vanished or unreadable: not collected
            continue
        with contextlib.suppress(OSError):  # a file the container's user owns: left as it is
            target.chmod(mode)
        moved.append(name)
    return moved


def kernel_table(profile_dir: Path, names: tuple[str, ...]) -> dict:
    """The step's per-kernel table from its traces: {"source", "rows": [{name, n_calls, mean_us, total_us}],
    "traces", "notes"}. The worker traces are read; the API server's only when there is nothing else."""
    traces = [n for n in names if is_trace(n)]
    chosen = [n for n in traces if FRONTEND_MARK not in n] or traces
    totals: dict[str, list] = {}
    notes = []
    for name in chosen:
        trace, problem = load_chrome_trace(profile_dir / name)
        if trace is None:
            notes.append(f"{name} {problem}")
            continue
        for kernel, (total, count, source) in trace_kernel_times(trace).items():
            entry = totals.setdefault(kernel, [0.0, 0, source])
            entry[0] += total
            entry[1] += count
    sources = {source for _, _, source in totals.values()}
    source = "gpu" if "gpu" in sources else "cpu" if sources else None
    rows = sorted(
        (
            {"name": k, "n_calls": n, "mean_us": round(total / n, 3), "total_us": round(total, 3)}
            for k, (total, n, src) in totals.items()
            if src == source and n > 0
        ),
        key=lambda r: -r["total_us"],
    )
    return {"source": source, "rows": rows[:TABLE_ROWS], "kernels_seen": len(rows), "traces": chosen, "notes": notes}
