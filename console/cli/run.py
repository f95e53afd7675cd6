"""`gb10-console run PLAN | run --resume RUN_DIR | demo`: start a soak, in the console or `--headless`."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from rich.console import Console

from console.cli.command import CliError, Subparsers
from console.cli.data import checked_data_lines, ensure_datasets
from console.cli.headless import HeadlessPrinter, OutputLossTolerance, summary_table
from console.cli.interactive import show_console
from console.run_tail import log_size
from console.views.run_view import RunView
from runners import event_loop
from runners.plan.load import LoadedPlan, load_plan
from runners.run.paths import DEMO_PLAN, default_runs_dir
from runners.run.rundir import RunDir
from runners.run.runs import create_run, load_run_plan, open_run, spawn_detached
from runners.soak.host_preflight import host_preflight


def register(sub: Subparsers) -> None:
    """Add `run` and `demo`."""
    run = sub.add_parser("run", help="run a plan (or --resume a run directory)")
    run.add_argument("plan", nargs="?", type=Path, help="plan TOML file")
    run.add_argument("--resume", type=Path, metavar="RUN_DIR", help="continue a run: steps already DONE are skipped")
    run.add_argument("--out", type=Path, metavar="DIR", help="the run directory to create (default runs/<run-id>)")
    run.add_argument("--headless", action="store_true", help="no UI: run here and print progress; exit 0 on success")
    run.add_argument("--force", action="store_true", help="run an arm that matches this host's known-OOM record")
    run.set_defaults(handler=run_plan)

    demo = sub.add_parser("demo", help="run the demo plan: the embedded engine, two W_O split arms")
    demo.add_argument("--out", type=Path, metavar="DIR", help="the run directory to create (default runs/<run-id>)")
    demo.add_argument("--headless", action="store_true", help="no UI: run here and print progress")
    demo.add_argument("--force", action="store_true", help="run even if the demo matches a known OOM on this host")
    demo.set_defaults(handler=run_demo)


def run_plan(args: argparse.Namespace, out: Console) -> int:
    """`run PLAN` starts a new run, `run --resume RUN_DIR` continues one; returns the exit code."""
    if args.resume is not None:
        if args.plan is not None or args.out is not None:
            raise CliError("--resume takes a run directory only; drop PLAN and --out")
        run = open_run(args.resume)
        loaded = load_run_plan(run)
        warnings = preflight(run.plan_toml, loaded, args.force, run.info()["run_id"], runs_dir=run.root)
        ensure_datasets(run.plan_toml, loaded)
        checked_data_lines(run.plan_toml, loaded)
    elif args.plan is None:
        raise CliError("give a PLAN file, or --resume RUN_DIR")
    else:
        run, warnings = _create(args.plan, args.out, args.force)
    return _start_soak(run, warnings, args.headless, out)


def run_demo(args: argparse.Namespace, out: Console) -> int:
    """`demo`: a new run of configs/demo.toml; returns the exit code."""
    run, warnings = _create(DEMO_PLAN, args.out, args.force)
    return _start_soak(run, warnings, args.headless, out)


def preflight(path: Path, loaded: LoadedPlan, force: bool, run_id: str | None = None, starting: bool = True,
              runs_dir: Path | None = None) -> list[str]:  # fmt: skip
    """This host's pre-flight warnings for `loaded` (`runs_dir`: where the run directory goes, for the free disk);
    raises CliError (each line naming `path`) on a refusal."""
    missing = loaded.plan.missing_env_values()  # first: the host check reads the env (a known-OOM record's hash)
    errors = missing or (found := host_preflight(loaded, force, run_id, starting, runs_dir)).errors
    if errors:
        lines = "\n  ".join(f"{path}: {error}" for error in errors)
        raise CliError(f"refused on this host before anything started:\n  {lines}")
    return found.warnings


def run_in_console(run: RunDir) -> int:
    """Start a detached runner on `run` and open the console on it (quitting the console leaves it running)."""
    log_from = log_size(run.runner_log)  # the new runner's lines begin here
    return show_console(run, spawn_detached(run), runner_log_from=log_from)


def _create(plan: Path, out_dir: Path | None, force: bool) -> tuple[RunDir, list[str]]:
    loaded = load_plan(plan)
    warnings = preflight(plan, loaded, force, runs_dir=out_dir or default_runs_dir())  # before a run directory exists
    ensure_datasets(plan, loaded)
    checked_data_lines(plan, loaded)  # every data file parsed, before anything starts
    return create_run(plan, out_dir, default_runs_dir()), warnings


def _start_soak(run: RunDir, warnings: list[str], headless: bool, out: Console) -> int:
    """Say the pre-flight warnings, then run the soak here (`--headless`, or no terminal) or in the console."""
    for warning in warnings:
        print(f"warning: {warning}", file=sys.stderr)
    if headless:
        return _headless(run, out)
    if not sys.stdout.isatty():
        print("no terminal on stdout: running headless (pass --headless to skip this note)", file=sys.stderr)
        return _headless(run, out)
    return run_in_console(run)


def _headless(run: RunDir, out: Console) -> int:
    from runners.soak.execute import execute  # the orchestrator (and torch): only for a soak run in this process

    info = run.info()
    view = RunView.for_plan(load_run_plan(run).plan, info["run_id"])
    with OutputLossTolerance(run.runner_log).applied() as output:  # `| head`, a dropped ssh: the soak goes on
        out.print(f"run [b]{info['run_id']}[/b] in {run.root}", highlight=False)
        result = event_loop.run(execute(run, [HeadlessPrinter(out, view)]))
        if result.nothing_to_do:
            print(result.reason)
        table = summary_table(run)
        if table is not None:
            out.print(table)
        if run.summary_md.exists():
            out.print(f"summary: {run.summary_md}", highlight=False)
        if result.status != "finished":
            print(f"{result.status}: {result.reason}", file=sys.stderr)
            if result.status == "aborted":
                print(f"resume with: gb10-console run --resume {run.root}", file=sys.stderr)
        if output.lost:  # what the terminal would have said last
            output.note(f"runner: {result.status}: {result.reason}")
    return result.exit_code
