"""`gb10-console watch`: live memory / PSI / GPU samples on stdout, the successor of a 30 s mem_watchdog.log.

One line per interval (or one JSON object with `--json`), with the level the watchdog policy would
be at on this host with its default floors (or the floors given). N/A is printed as N/A, never 0.
"""

from __future__ import annotations

import argparse
import sys
import time

import orjson
from rich.console import Console

from console.cli.command import CliError, Subparsers
from engine.units import NOT_MEASURED, number_text, to_gib
from runners.host.meminfo import read_meminfo
from runners.watchdog.policy import Floors, Policy, PolicyConfig, default_floors
from runners.watchdog.samplers import Sample, Sampler


def register(sub: Subparsers) -> None:
    """Add `watch`."""
    watch = sub.add_parser("watch", help="print live memory, PSI and GPU samples (headless)")
    watch.add_argument("--json", action="store_true", help="one JSON object per sample")
    watch.add_argument("--interval", type=float, default=1.0, metavar="S", help="seconds between lines (default 1)")
    watch.add_argument("--count", type=int, default=0, metavar="N", help="stop after N samples (default: run until ^C)")
    watch.add_argument("--floors", metavar="WARN,ABORT,KILL", help="floors in GiB (default: sized from this host)")
    watch.set_defaults(handler=watch_host)


def _floors(text: str | None) -> Floors:
    """The floors given on the command line (ValueError naming the problem), or this host's defaults."""
    if not text:
        return default_floors(read_meminfo().total)
    try:
        warn, abort, kill = (float(part) for part in text.split(","))
    except ValueError:
        raise ValueError(f"--floors {text!r}: give WARN,ABORT,KILL in GiB, e.g. 16,10,6") from None
    return Floors(warn, abort, kill)


def line(sample: Sample, level: str, fill: float | None) -> str:
    """One human-readable line for a sample."""
    mem, psi, gpu = sample.mem, sample.psi, sample.gpu
    parts = [
        time.strftime("%H:%M:%S", time.localtime(sample.t)),
        f"avail {number_text(to_gib(mem.available))}/{number_text(to_gib(mem.total))} GiB",
        f"{level.upper():5}",
        f"fill {number_text(fill, 2, ' GiB/s', signed=True)}",
        f"swapfree {number_text(to_gib(mem.swap_free))}",
        f"psi some/full {number_text(psi.some_avg10 if psi else None)}/{number_text(psi.full_avg10 if psi else None)}",
    ]
    if gpu is None or not gpu.available:
        parts.append(f"gpu {NOT_MEASURED} ({gpu.reason if gpu else 'not sampled'})")
    else:
        memory = "unified" if gpu.unified else "discrete"
        parts.append(
            f"gpu {number_text(gpu.util_pct, 0, '%')} {number_text(gpu.temp_c, 0, 'C')} "
            f"{number_text(gpu.power_w, 0, 'W')} sm {number_text(gpu.sm_clock_mhz, 0, 'MHz')} "
            f"procs {number_text(to_gib(gpu.process_mem_bytes))} GiB ({memory})"
        )
    return "  ".join(parts)


def watch_host(args: argparse.Namespace, out: Console) -> int:
    """Sample until ^C (or --count samples); exit 0."""
    try:
        if args.interval <= 0:
            raise ValueError("--interval must be positive")
        policy = Policy(PolicyConfig(floors=_floors(args.floors)))
    except ValueError as exc:
        raise CliError(str(exc)) from None
    sampler = Sampler()
    n = 0
    try:
        while args.count <= 0 or n < args.count:
            sample = sampler.sample()
            decision = policy.observe(sample.t, sample.mem.available, sample.psi.full_avg10 if sample.psi else None)
            if args.json:
                record = {**sample.as_dict(), "level": decision.level.label, "fill_gib_s": decision.fill_gib_s}
                sys.stdout.write(orjson.dumps(record).decode() + "\n")
            else:
                sys.stdout.write(line(sample, decision.level.label, decision.fill_gib_s) + "\n")
            sys.stdout.flush()
            n += 1
            if args.count <= 0 or n < args.count:
                time.sleep(args.interval)
    except KeyboardInterrupt:
        pass
    return 0
