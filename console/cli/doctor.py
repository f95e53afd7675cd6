"""`gb10-console doctor [PLAN] [--json]`: is this host ready for soaks? One row per check, what to do on each failure.

Exit 0 when no check failed (warnings do not fail), 1 when one did. `--json` prints one object for scripts:
`{"plan": ..., "runs_dir": ..., "ok": bool, "checks": [{"name", "status", "detail", "fix"}, ...]}`.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import orjson
from rich.console import Console
from rich.table import Table

from console.cli.command import EXIT_FAILED, Subparsers
from runners.host.doctor import Check
from runners.plan.load import load_plan
from runners.run.paths import default_runs_dir
from runners.soak.doctor import failed, plan_checks

STATUS_STYLE = {"ok": "green", "warn": "yellow", "fail": "bold red", "skipped": "dim"}


def register(sub: Subparsers) -> None:
    """Add `doctor`."""
    doctor = sub.add_parser("doctor", help="check this host for soaks: engine, image, GPU runtime, mounts, disk, "
                            "logind RemoveIPC, memory")  # fmt: skip
    doctor.add_argument("plan", type=Path, nargs="?", help="judge the host for this plan's target (default: any soak)")
    doctor.add_argument("--json", action="store_true", help="one JSON object instead of the table")
    doctor.add_argument("--out", type=Path, metavar="DIR", help="where runs will be written (default ./runs)")
    doctor.set_defaults(handler=run_doctor)


def table(checks: list[Check]) -> Table:
    """The checks as a table: name, status (coloured), what was measured, what to do."""
    grid = Table(show_lines=False, expand=False)
    for column in ("check", "status", "detail", "fix"):
        grid.add_column(column, overflow="fold")
    for check in checks:
        style = STATUS_STYLE[check.status]
        grid.add_row(check.name, f"[{style}]{check.status}[/{style}]", check.detail, check.fix)
    return grid


def run_doctor(args: argparse.Namespace, out: Console) -> int:
    """Run the checks for the plan (or any soak) and print them; 1 when one failed."""
    loaded = load_plan(args.plan) if args.plan else None
    runs_dir = args.out or default_runs_dir()
    checks = plan_checks(loaded, runs_dir)
    if args.json:
        body = {"plan": str(args.plan) if args.plan else None, "runs_dir": str(runs_dir), "ok": not failed(checks),
                "checks": [c.to_json() for c in checks]}  # fmt: skip
        print(orjson.dumps(body, option=orjson.OPT_INDENT_2).decode())
    else:
        out.print(table(checks))
        worst = "a check failed: fix it before a soak" if failed(checks) else "nothing failed"
        out.print(worst, highlight=False)
    return EXIT_FAILED if failed(checks) else 0
