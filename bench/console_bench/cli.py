"""`python -m bench.console_bench [--quick] [--runs N] [--json OUT]`: run the console benchmark and print it."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from rich.console import Console

from bench.console_bench.repeated import BenchRunError, medians_table, repeated_runs
from bench.console_bench.report import FULL, QUICK, report_table, run_all
from runners.run.files import write_json_atomic


def _runs(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"--runs must be 1 or more, not {value}")
    return value


def main(argv: list[str] | None = None) -> int:
    """Measure, print the table, write the JSON; exit 0 when every target is met, 1 when one is missed, 2 when a
    run ended without its results.

    One run (the default) runs in this process; its JSON is that run's report. `--runs N` (N > 1) takes each
    run in a fresh process and prints a table of the medians after theirs; its JSON is {"runs": [N reports],
    "medians", "targets", "sizes", "passed", "host"}.
    """
    parser = argparse.ArgumentParser(prog="python -m bench.console_bench", description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="small rates and short windows (tests, smoke runs)")
    parser.add_argument("--runs", type=_runs, default=1, metavar="N", help="N runs, each in a fresh process")
    parser.add_argument("--json", type=Path, metavar="OUT", help="also write the results (raw samples too) as JSON")
    args = parser.parse_args(argv)
    console = Console()
    if args.runs == 1:
        report = run_all(QUICK if args.quick else FULL)
        console.print(report_table(report))
        result, passed = report.as_dict(), report.passed
    else:
        try:
            result = repeated_runs(args.runs, args.quick)
        except BenchRunError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2
        console.print(medians_table(result))
        passed = result["passed"]
    if args.json:
        write_json_atomic(args.json, result)
        console.print(f"results written to {args.json}", highlight=False)
    return 0 if passed else 1
