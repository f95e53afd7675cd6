"""One run of the console benchmark: its sizes, the four measurements in order, and their table and JSON."""

from __future__ import annotations

import os
import sys
from dataclasses import asdict, dataclass

from rich.table import Table

from bench.console_bench.attach import AttachTime, attach_time
from bench.console_bench.idle_cpu import IdleCpu, idle_cpu
from bench.console_bench.memory import MemoryAfterSoak, memory_after_soak
from bench.console_bench.metrics import (
    BACKLOG_GROWTH_FRACTION,
    TARGET_ATTACH_S,
    TARGET_IDLE_CPU_PCT,
    TARGET_KEY_P95_MS,
    TARGET_RSS_MB,
)
from bench.console_bench.responsiveness import Responsiveness, responsiveness
from engine.units import NOT_MEASURED


@dataclass(frozen=True)
class BenchSizes:
    """How long and how hard each measurement runs."""

    rate_hz: float = 2000
    responsive_s: float = 10
    hours: float = 8
    event_rate_hz: float = 1.0
    sample_rate_hz: float = 0.2
    idle_s: float = 30
    attach_tries: int = 3


FULL = BenchSizes()
QUICK = BenchSizes(rate_hz=400, responsive_s=3, hours=0.25, idle_s=3, attach_tries=1)


def targets() -> dict:
    """Every target, keyed as the JSON has them."""
    return {
        "key_p95_ms": TARGET_KEY_P95_MS, "rss_mb": TARGET_RSS_MB, "idle_cpu_pct": TARGET_IDLE_CPU_PCT,
        "attach_first_frame_s": TARGET_ATTACH_S, "backlog_growth_fraction": BACKLOG_GROWTH_FRACTION,
    }  # fmt: skip


def host() -> dict:
    """The machine the figures come from."""
    return {"cpus": os.cpu_count(), "python": sys.version.split()[0], "load_avg": list(os.getloadavg())}


@dataclass
class BenchReport:
    """The four results and their verdicts."""

    sizes: BenchSizes
    responsiveness: Responsiveness
    memory: MemoryAfterSoak
    idle_cpu: IdleCpu
    attach: AttachTime

    def as_dict(self) -> dict:
        """JSON-ready, with each verdict and the targets."""
        return {
            "sizes": asdict(self.sizes),
            "targets": targets(),
            "responsiveness": {**asdict(self.responsiveness), "passed": self.responsiveness.passed},
            "memory": {**asdict(self.memory), "passed": self.memory.passed},
            "idle_cpu": {**asdict(self.idle_cpu), "passed": self.idle_cpu.passed},
            "attach": {**asdict(self.attach), "passed": self.attach.passed},
            "passed": self.passed,
            "host": host(),
        }

    @property
    def passed(self) -> bool:
        """Every target met."""
        return self.responsiveness.passed and self.memory.passed and self.idle_cpu.passed and self.attach.passed


def run_all(sizes: BenchSizes) -> BenchReport:
    """The four measurements; memory first, while this process's heap is fresh (attach runs in processes of its
    own, so its place in the order does not matter)."""
    memory = memory_after_soak(sizes.hours, sizes.event_rate_hz, sizes.sample_rate_hz)
    keys = responsiveness(sizes.rate_hz, sizes.responsive_s)
    cpu = idle_cpu(sizes.idle_s)
    attach = attach_time(sizes.hours, sizes.attach_tries)
    return BenchReport(sizes, keys, memory, cpu, attach)


def figure(value: float | None, digits: int = 1) -> str:
    """A figure with thousands separators and `digits` decimals; NOT_MEASURED for None."""
    return NOT_MEASURED if value is None else f"{value:,.{digits}f}"


def verdict(ok: bool) -> str:
    """pass, or FAIL in bold red."""
    return "[green]pass[/]" if ok else "[bold red]FAIL[/]"


def report_table(report: BenchReport) -> Table:
    """The results as a rich table: measure, value, target, verdict."""
    r, m, c, a = report.responsiveness, report.memory, report.idle_cpu, report.attach
    table = Table(title="console benchmark", title_justify="left")
    for column in ("measure", "value", "target", "verdict"):
        table.add_column(column)
    key_ok = r.key_p95_ms is not None and r.key_p95_ms < TARGET_KEY_P95_MS and r.keys_missed == 0
    kept_up = not r.backlog_grew and r.events_folded == r.events_written
    tries = ", ".join(figure(t.first_frame_s, 2) for t in a.tries)
    rows = [
        (f"key -> frame at {r.rate_hz:,.0f} ev/s, {r.seconds:g} s (p50 / p95 / max)",
         f"{figure(r.key_p50_ms)} / {figure(r.key_p95_ms)} / {figure(r.key_max_ms)} ms, "
         f"{r.key_presses} keys, {r.keys_missed} missed",
         f"p95 < {TARGET_KEY_P95_MS:g} ms", verdict(key_ok)),
        ("backlog (written - folded): max, slope, drain",
         f"{r.backlog_max:,} ev, {figure(r.backlog_slope_per_s)} ev/s, drained in {figure(r.drain_s, 2)} s "
         f"({r.events_folded:,}/{r.events_written:,} folded, {r.achieved_rate_hz:,.0f} ev/s written)",
         f"slope < {BACKLOG_GROWTH_FRACTION * r.rate_hz:,.0f} ev/s", verdict(kept_up)),
        (f"RSS after {m.hours:g} h of soak ({m.events_written:,} events, {m.records_written:,} records)",
         f"{figure(m.rss_after_mb)} MB (before {figure(m.rss_before_mb)}, +{figure(m.rss_delta_mb)}; "
         f"peak {figure(m.peak_rss_mb)}; folded in {figure(m.fold_s, 2)} s)", f"< {TARGET_RSS_MB:g} MB",
         verdict(m.passed)),
        (f"CPU attached at {c.event_rate_hz:g} Hz, {c.seconds:g} s",
         f"{figure(c.cpu_pct, 2)} % of a core (bench writer {figure(c.writer_cpu_pct, 2)} %)",
         f"< {TARGET_IDLE_CPU_PCT:g} %", verdict(c.passed)),
        (f"attach -> first frame, fresh process, {a.hours:g} h run (p50 of {len(a.tries)})",
         f"{figure(a.first_frame_p50_s, 2)} s (tries {tries}; run shown at p50 {figure(a.run_shown_p50_s, 2)} s)",
         f"< {TARGET_ATTACH_S:g} s", verdict(a.passed)),
    ]  # fmt: skip
    for row in rows:
        table.add_row(*row)
    return table
