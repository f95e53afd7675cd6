"""`gb10-console results ingest|list|query|pareto`: soak results from many runs in one SQLite database.

Every subcommand takes `--db PATH` (default: $GB10_RESULTS_DB, else results.db here). `ingest` reads
run directories (re-ingesting a run replaces its rows); the others read the database and print a
table, or JSON with `--json`. Bad input is one `error: ...` line on stderr and exit code 2 (a ResultsDBError,
reported by `console.cli.main`).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path

from rich.console import Console
from rich.table import Table

from console.cli.command import EXIT_BAD_INPUT, Handler, Subparsers
from engine.config_file import ConfigFileError
from engine.units import number_text
from runners.results_db.schema import LATEST_VERSION, METRIC_COLUMNS, ResultsDBError
from runners.results_db.store import GROUP_COLUMNS, ResultsDB, open_db
from runners.run.rundir import RunDirError

DB_ENV = "GB10_RESULTS_DB"
DEFAULT_DB = "results.db"


def register(sub: Subparsers) -> None:
    """Add `results` and its subcommands."""
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--db", type=Path, metavar="PATH", help=f"the results database (default: ${DB_ENV}, else ./{DEFAULT_DB})"
    )
    results = sub.add_parser("results", help="a database of soak results across runs: ingest, list, query, pareto")
    what = results.add_subparsers(dest="results", required=True, metavar="WHAT")
    ingest = what.add_parser("ingest", parents=[common], help="add run directories (again: replaces their rows)")
    ingest.add_argument("run_dirs", nargs="+", type=Path, metavar="RUN_DIR")
    ingest.set_defaults(handler=ingest_runs)
    listing = what.add_parser("list", parents=[common], help="the ingested runs")
    listing.add_argument("--json", action="store_true", help="print JSON instead of a table")
    listing.set_defaults(handler=_reading(_list))
    query = what.add_parser("query", parents=[common], help="count/mean/min/max of a phase metric, grouped")
    query.add_argument("--metric", required=True, metavar="M", help=f"one of: {', '.join(METRIC_COLUMNS)}")
    query.add_argument(
        "--group-by", required=True, metavar="COL[,COL]", help=f"columns from: {', '.join(GROUP_COLUMNS)}"
    )
    query.add_argument("--where", action="append", default=[], metavar="COL=VAL", help="filter (repeatable)")
    query.add_argument("--phase", metavar="P", help="only phase P (same as --where phase=P)")
    query.add_argument("--json", action="store_true", help="print JSON instead of a table")
    query.set_defaults(handler=_reading(_query))
    pareto = what.add_parser("pareto", parents=[common], help="output tok/s vs TTFT p99 and the Pareto frontier")
    pareto.add_argument("--phase", metavar="P", help="only phase P (comparing across phases mixes workloads)")
    pareto.add_argument("--json", action="store_true", help="print JSON instead of a table")
    pareto.set_defaults(handler=_reading(_pareto))


def db_path(args: argparse.Namespace) -> Path:
    """--db, else $GB10_RESULTS_DB, else results.db in the current directory."""
    return args.db or Path(os.environ.get(DB_ENV) or DEFAULT_DB)


def _reading(show: Callable[[ResultsDB, argparse.Namespace, Console], None]) -> Handler:
    """The handler of a subcommand that reads the database (never creates it) and prints what `show` makes."""

    def handler(args: argparse.Namespace, out: Console) -> int:
        with _open(db_path(args), create=False) as db:
            show(db, args, out)
        return 0

    return handler


def _open(path: Path, create: bool) -> ResultsDB:
    """open_db, saying on stderr when it upgraded an older database in place."""
    db = open_db(path, create)
    if 0 < db.found_version < LATEST_VERSION:
        print(f"upgraded {db.path} from schema v{db.found_version} to v{LATEST_VERSION}", file=sys.stderr)
    return db


def _print_json(value: object) -> None:
    sys.stdout.write(json.dumps(value, indent=2) + "\n")


def ingest_runs(args: argparse.Namespace, out: Console) -> int:
    """`ingest`: add each run directory (again: replace its rows); one `error:` line for each that cannot be read,
    the others are ingested all the same, and the exit code is then 2."""
    failed = 0
    with _open(db_path(args), create=True) as db:
        for root in args.run_dirs:
            try:
                s = db.ingest_dir(root)
            except (RunDirError, ConfigFileError, OSError, ValueError) as exc:  # OSError/ValueError: a corrupt file
                failed += 1
                why = str(exc) if isinstance(exc, (RunDirError, ConfigFileError)) else f"{root}: cannot read ({exc})"
                print(f"error: {why}", file=sys.stderr)
                continue
            again = " (replaced its earlier rows)" if s.replaced else ""
            out.print(
                f"ingested {s.run_id}: {s.arms} arms, {s.phases} phase rows, {s.gates} gates{again}", highlight=False
            )
        out.print(
            f"ingested {len(args.run_dirs) - failed} of {len(args.run_dirs)} run directories into {db.path}",
            highlight=False,
        )
    return EXIT_BAD_INPUT if failed else 0


def _when(t: float | None) -> str:
    return "-" if t is None else time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(t))


def _list(db: ResultsDB, args: argparse.Namespace, out: Console) -> None:
    runs = db.list_runs()
    if args.json:
        _print_json([asdict(r) for r in runs])
        return
    table = Table(title=f"runs in {db.path}")
    for col in ("run", "plan", "status", "host", "git sha", "started", "ended", "arms", "phase rows"):
        table.add_column(col)
    for r in runs:
        table.add_row(
            r.run_id, r.plan, r.status, r.host or "-", (r.git_sha or "-")[:12], _when(r.started_at),
            _when(r.ended_at), str(r.arms), str(r.phases),
        )  # fmt: skip
    out.print(table)


def _where(args: argparse.Namespace) -> list[tuple[str, str]]:
    """The --where filters as (column, value), plus --phase; ResultsDBError for one without '='."""
    pairs = []
    for text in args.where:
        column, sep, value = text.partition("=")
        if not sep or not column.strip():
            raise ResultsDBError(f"--where {text!r}: give COL=VAL, e.g. --where arm=split8")
        pairs.append((column.strip(), value))
    if args.phase is not None:
        pairs.append(("phase", args.phase))
    return pairs


def _query(db: ResultsDB, args: argparse.Namespace, out: Console) -> None:
    group_by = [c.strip() for c in args.group_by.split(",") if c.strip()]
    if not group_by:
        raise ResultsDBError("--group-by: give at least one column")
    rows = db.query(args.metric, group_by, _where(args))
    if args.json:
        _print_json({"metric": args.metric, "group_by": group_by, "rows": [asdict(r) for r in rows]})
        return
    table = Table(title=f"{args.metric} by {', '.join(group_by)}")
    for col in (*group_by, "count", "mean", "min", "max"):
        table.add_column(col, justify="right" if col in ("count", "mean", "min", "max") else "left")
    for r in rows:
        cells = [str(v) if v is not None else "-" for v in r.group.values()]
        table.add_row(*cells, str(r.count), number_text(r.mean, 2), number_text(r.min, 2), number_text(r.max, 2))
    out.print(table)


def _pareto(db: ResultsDB, args: argparse.Namespace, out: Console) -> None:
    points = db.pareto(args.phase)
    if args.json:
        _print_json([asdict(p) for p in points])
        return
    where = f" (phase {args.phase})" if args.phase else " (all phases)"
    table = Table(title=f"output tok/s vs TTFT p99{where}: * = on the Pareto frontier")
    for col in ("", "run", "arm", "phase", "mechanism / variant", "output tok/s", "TTFT p99 ms"):
        table.add_column(col, justify="right" if col.endswith(("/s", "ms")) else "left")
    for p in points:
        mechanism = f"{p.mechanism or '-'} / {p.variant or '-'}"
        table.add_row(
            "*" if p.on_frontier else "", p.run_id, p.arm, p.phase, mechanism, number_text(p.output_tok_s, 1),
            number_text(p.ttft_p99_ms, 2),
        )  # fmt: skip
    out.print(table)
