"""Several runs of the console benchmark, each in a fresh process (RSS only shrinks when the allocator gives
memory back, so a second run in the same process would measure the first one's heap), and their medians."""

from __future__ import annotations

import subprocess
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

from rich.table import Table

from bench.console_bench.metrics import TARGET_ATTACH_S, TARGET_IDLE_CPU_PCT, TARGET_KEY_P95_MS, TARGET_RSS_MB
from bench.console_bench.report import figure, host, targets, verdict
from runners.replay.metrics import percentile
from runners.run.files import read_json
from runners.run.paths import PROJECT_ROOT

RUN_DEADLINE_S = 1800.0  # one full run takes a few minutes

# The headline figure of each measurement: (name, unit, target, the figure in one run's JSON).
HEADLINES: list[tuple[str, str, float, Callable[[dict], float | None]]] = [
    ("key_p95_ms", "ms", TARGET_KEY_P95_MS, lambda run: run["responsiveness"]["key_p95_ms"]),
    ("rss_after_mb", "MB", TARGET_RSS_MB, lambda run: run["memory"]["rss_after_mb"]),
    ("idle_cpu_pct", "%", TARGET_IDLE_CPU_PCT, lambda run: run["idle_cpu"]["cpu_pct"]),
    ("attach_first_frame_s", "s", TARGET_ATTACH_S, lambda run: run["attach"]["first_frame_p50_s"]),
]


class BenchRunError(RuntimeError):
    """A run of the benchmark ended without its results."""


def run_fresh(quick: bool, out: Path) -> dict:
    """One run as `python -m bench.console_bench [--quick] --json OUT` in a fresh process (its table printed
    as it goes); its JSON report. Exit 1 (a target missed) is a result; anything else raises BenchRunError."""
    command = [sys.executable, "-m", "bench.console_bench", *(["--quick"] if quick else []), "--json", str(out)]
    try:
        done = subprocess.run(command, cwd=PROJECT_ROOT, timeout=RUN_DEADLINE_S, check=False)
    except subprocess.TimeoutExpired:
        raise BenchRunError(f"`{' '.join(command)}` did not finish within {RUN_DEADLINE_S:g} s (killed)") from None
    if done.returncode not in (0, 1) or not out.exists():
        raise BenchRunError(f"`{' '.join(command)}` exited with {done.returncode} without writing {out}")
    return read_json(out)


def repeated_runs(runs: int, quick: bool) -> dict:
    """`runs` fresh runs: each run's report, the median of each headline figure and whether every run passed."""
    with tempfile.TemporaryDirectory(prefix="gb10-console-bench-runs-") as tmp:
        reports = [run_fresh(quick, Path(tmp) / f"run-{i}.json") for i in range(runs)]
    medians = {name: percentile(_values(reports, get), 50) for name, _, _, get in HEADLINES}
    return {
        "runs": reports, "medians": medians, "targets": targets(), "sizes": reports[0]["sizes"],
        "passed": all(r["passed"] for r in reports), "host": host(),
    }  # fmt: skip


def _values(reports: list[dict], get: Callable[[dict], float | None]) -> list[float]:
    return [v for v in (get(r) for r in reports) if v is not None]


def medians_table(result: dict) -> Table:
    """Each headline figure over the runs: every run's value, the median, the target and the median's verdict."""
    reports = result["runs"]
    table = Table(title=f"console benchmark, {len(reports)} runs", title_justify="left")
    for column in ("figure", "runs", "median", "target", "verdict"):
        table.add_column(column)
    for name, unit, target, get in HEADLINES:
        median = result["medians"][name]
        table.add_row(
            name, " / ".join(figure(get(r), 2) for r in reports), f"{figure(median, 2)} {unit}",
            f"< {target:g} {unit}", verdict(median is not None and median < target),
        )  # fmt: skip
    return table
