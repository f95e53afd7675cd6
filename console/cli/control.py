"""`gb10-console abort RUN_DIR`: ask the runner of a run to abort (the run stays resumable)."""

from __future__ import annotations

import argparse
from pathlib import Path

from rich.console import Console

from console.cli.command import EXIT_FAILED, CliError, Subparsers
from runners.run.control import request_abort
from runners.run.rundir import runner_alive
from runners.run.runs import open_run


def register(sub: Subparsers) -> None:
    """Add `abort`."""
    abort = sub.add_parser("abort", help="ask the runner of a run directory to abort (stays resumable)")
    abort.add_argument("run_dir", type=Path)
    abort.set_defaults(handler=abort_run)


def abort_run(args: argparse.Namespace, out: Console) -> int:
    """Write the abort request; CliError (exit 1) when no runner works on the run."""
    run = open_run(args.run_dir)
    if not runner_alive(run):
        raise CliError(f"no runner is working on {run.root}; nothing to abort", code=EXIT_FAILED)
    request_abort(run, "gb10-console abort", by="cli")
    print(f"abort requested for {run.root}; the runner stops the serve target and marks the run resumable")
    return 0
