"""`gb10-console attach RUN_DIR [--readonly]`, and `gb10-console` alone: the launcher.

The launcher attaches to the newest live run under ./runs, else lists recent runs and the plans in
configs/ and offers to start one.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from rich.console import Console

from console.cli.command import CliError, Subparsers
from console.cli.headless import status_lines
from console.cli.interactive import has_screen, show_console
from console.cli.run import preflight, run_in_console
from runners.plan.load import load_plan
from runners.run.paths import CONFIGS_DIR, default_runs_dir
from runners.run.run_index import list_runs, newest_live, plan_files
from runners.run.rundir import RunDir
from runners.run.runs import create_run, open_run


def register(sub: Subparsers) -> None:
    """Add `attach` (the launcher is the parser's default: see `console.cli`)."""
    attach = sub.add_parser("attach", help="watch a run directory in the console (live or finished)")
    attach.add_argument("run_dir", type=Path)
    attach.add_argument("--readonly", action="store_true", help="no abort or resume: look, never touch")
    attach.set_defaults(handler=attach_run)


def attach_run(args: argparse.Namespace, out: Console) -> int:
    """`attach`: the console on RUN_DIR, or its status as text when stdout is not a terminal."""
    return _attach(open_run(args.run_dir), args.readonly)


def launch(args: argparse.Namespace, out: Console) -> int:
    """No command: attach to the newest live run under ./runs, else list runs and plans and offer to start one."""
    runs_dir = default_runs_dir()
    entries = list_runs(runs_dir)
    live = newest_live(entries)
    if live is not None:
        print(f"attaching to {live.run_id} (plan {live.plan}), the newest live run in {runs_dir}")
        return _attach(live.run)
    plans = plan_files(CONFIGS_DIR)
    print(f"No live run in {runs_dir}.")
    if entries:
        print("Recent runs (gb10-console attach RUN_DIR):")
        for e in entries[:5]:
            print(f"  {e.run.root}  {e.plan}  {e.status}")
    print("Plans (gb10-console run PLAN):")
    for i, path in enumerate(plans, 1):
        print(f"  {i}. {path}")
    if not sys.stdin.isatty() or not sys.stdout.isatty() or not plans:
        return 0
    answer = input(f"Start which plan? [1-{len(plans)}, enter to quit] ").strip()
    if not answer:
        return 0
    if not answer.isdigit() or not 1 <= int(answer) <= len(plans):
        raise CliError(f"{answer!r} is not a plan number between 1 and {len(plans)}")
    chosen = plans[int(answer) - 1]
    for warning in preflight(chosen, load_plan(chosen), force=False):
        print(f"warning: {warning}", file=sys.stderr)
    return run_in_console(create_run(chosen, None, runs_dir))


def _attach(run: RunDir, readonly: bool = False) -> int:
    if not has_screen():  # a pipe or a file would get the screen's escape codes, and the app would wait for keys
        print("\n".join(status_lines(run)))
        web = f"gb10-console serve-web {run.root}"
        print(f"note: stdout is not a terminal: printed the run's status instead of the console; attach from a "
              f"terminal, or watch it in a browser with `{web}`", file=sys.stderr)  # fmt: skip
        return 0
    return show_console(run, readonly=readonly)
