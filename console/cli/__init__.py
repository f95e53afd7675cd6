"""`gb10-console`: run, resume, attach to, and abort soaks; `demo` runs configs/demo.toml."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from rich.console import Console

from console.cli import bench as bench_cli
from console.cli import report as report_cli
from console.cli import results as results_cli
from console.cli import watch as watch_cli
from console.cli import web as web_cli
from console.cli.headless import HeadlessPrinter, OutputLossTolerance, status_lines, summary_table
from console.run_tail import log_size
from console.views.run_view import RunView
from engine.config_file import ConfigFileError
from runners import event_loop
from runners.evidence.mechanism_input import MechanismInput
from runners.gates.mechanism import ACCEPTANCE_RULE, mechanism_gate
from runners.gates.registry import load_registry
from runners.plan.load import LoadedPlan, load_plan
from runners.plan.preflight import preflight_warnings
from runners.plan.serve_spec import DockerServe, ExternalServe
from runners.run.control import request_abort
from runners.run.paths import CONFIGS_DIR, DEMO_PLAN, default_runs_dir
from runners.run.run_index import list_runs, newest_live, plan_files
from runners.run.rundir import RunDir, RunDirError, runner_alive
from runners.run.runs import create_run, load_run_plan, open_run, spawn_detached
from runners.soak.execute import execute
from runners.soak.host_preflight import host_preflight

EXIT_BAD_INPUT = 2


class CliError(Exception):
    """A problem to report in one line, with the exit code to use."""

    def __init__(self, message: str, code: int = EXIT_BAD_INPUT) -> None:
        super().__init__(message)
        self.code = code


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="gb10-console", description=__doc__)
    sub = p.add_subparsers(dest="command", metavar="COMMAND")  # none: attach to the newest live run

    run = sub.add_parser("run", help="run a plan (or --resume a run directory)")
    run.add_argument("plan", nargs="?", type=Path, help="plan TOML file")
    run.add_argument("--resume", type=Path, metavar="RUN_DIR", help="continue a run: steps already DONE are skipped")
    run.add_argument("--out", type=Path, metavar="DIR", help="the run directory to create (default runs/<run-id>)")
    run.add_argument("--headless", action="store_true", help="no UI: run here and print progress; exit 0 on success")
    run.add_argument("--force", action="store_true", help="run an arm that matches this host's known-OOM record")

    demo = sub.add_parser("demo", help="run the demo plan: the embedded engine, two W_O split arms")
    demo.add_argument("--out", type=Path, metavar="DIR", help="the run directory to create (default runs/<run-id>)")
    demo.add_argument("--headless", action="store_true", help="no UI: run here and print progress")
    demo.add_argument("--force", action="store_true", help="run even if the demo matches a known OOM on this host")

    attach = sub.add_parser("attach", help="watch a run directory in the console (live or finished)")
    attach.add_argument("run_dir", type=Path)
    attach.add_argument("--readonly", action="store_true", help="no abort or resume: look, never touch")

    abort = sub.add_parser("abort", help="ask the runner of a run directory to abort (stays resumable)")
    abort.add_argument("run_dir", type=Path)

    validate = sub.add_parser("validate", help="check a plan without running it: fields, files, steps, target")
    validate.add_argument("plan", type=Path)
    validate.add_argument("--force", action="store_true", help="a known-OOM match is a warning, not an error")
    report_cli.add_parsers(sub)
    results_cli.add_parser(sub)
    bench_cli.add_parsers(sub)
    watch_cli.add_parser(sub)
    web_cli.add_parser(sub)
    return p


def _preflight(path: Path, loaded: LoadedPlan, force: bool, run_id: str | None = None, starting: bool = True
               ) -> list[str]:  # fmt: skip
    """This host's pre-flight warnings for `loaded`; raises CliError (each line naming `path`) on a refusal."""
    found = host_preflight(loaded, force, run_id, starting)
    if found.errors:
        lines = "\n  ".join(f"{path}: {error}" for error in found.errors)
        raise CliError(f"refused on this host before anything started:\n  {lines}")
    return found.warnings


def _start(args: argparse.Namespace, plan: Path | None) -> RunDir:
    if args.command == "run" and args.resume is not None:
        if plan is not None or args.out is not None:
            raise CliError("--resume takes a run directory only; drop PLAN and --out")
        run = open_run(args.resume)
        warnings = _preflight(run.plan_toml, load_run_plan(run), args.force, run.info()["run_id"])
    elif plan is None:
        raise CliError("give a PLAN file, or --resume RUN_DIR")
    else:
        warnings = _preflight(plan, load_plan(plan), args.force)  # before a run directory exists
        run = create_run(plan, args.out, default_runs_dir())
    for warning in warnings:
        print(f"warning: {warning}", file=sys.stderr)
    return run


def _headless(run: RunDir, console: Console) -> int:
    info = run.info()
    view = RunView.for_plan(load_run_plan(run).plan, info["run_id"])
    with OutputLossTolerance(run.runner_log).applied() as output:  # `| head`, a dropped ssh: the soak goes on
        console.print(f"run [b]{info['run_id']}[/b] in {run.root}", highlight=False)
        result = event_loop.run(execute(run, [HeadlessPrinter(console, view)]))
        if result.nothing_to_do:
            print(result.reason)
        table = summary_table(run)
        if table is not None:
            console.print(table)
        if run.summary_md.exists():
            console.print(f"summary: {run.summary_md}", highlight=False)
        if result.status != "finished":
            print(f"{result.status}: {result.reason}", file=sys.stderr)
            if result.status == "aborted":
                print(f"resume with: gb10-console run --resume {run.root}", file=sys.stderr)
        if output.lost:  # what the terminal would have said last
            output.note(f"runner: {result.status}: {result.reason}")
    return result.exit_code


def _terminal_sizes_itself() -> None:
    """On a terminal, drop an exported COLUMNS/LINES: Textual would take it over the terminal's own size, even
    after a resize (the web driver gets its size from the browser and has no terminal on stdout)."""
    if sys.stdout.isatty():
        for name in ("COLUMNS", "LINES"):
            os.environ.pop(name, None)


def _interactive(run: RunDir) -> int:
    from console.app import RunConsole

    log_from = log_size(run.runner_log)  # the new runner's lines begin here
    runner = spawn_detached(run)
    _terminal_sizes_itself()
    RunConsole(run, runner, runner_log_from=log_from).run()
    _after_console(run)
    return 0


def _has_screen() -> bool:
    """The console can draw: stdout is a terminal, or a Textual driver of its own is named (serve-web's)."""
    return sys.stdout.isatty() or bool(os.environ.get("TEXTUAL_DRIVER"))


def _attach(run: RunDir, readonly: bool = False) -> int:
    from console.app import RunConsole

    if not _has_screen():  # a pipe or a file would get the screen's escape codes, and the app would wait for keys
        print("\n".join(status_lines(run)))
        web = f"gb10-console serve-web {run.root}"
        print(f"note: stdout is not a terminal: printed the run's status instead of the console; attach from a "
              f"terminal, or watch it in a browser with `{web}`", file=sys.stderr)  # fmt: skip
        return 0
    _terminal_sizes_itself()
    RunConsole(run, readonly=readonly).run()
    _after_console(run)
    return 0


def _launch() -> int:
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
    for warning in _preflight(chosen, load_plan(chosen), force=False):
        print(f"warning: {warning}", file=sys.stderr)
    return _interactive(create_run(chosen, None, runs_dir))


def _after_console(run: RunDir) -> None:
    if runner_alive(run):
        print(
            f"The soak keeps running in the background.\n"
            f"  reattach: gb10-console attach {run.root}\n  abort:    gb10-console abort {run.root}"
        )
    elif run.summary_md.exists():
        print(f"run directory: {run.root}\nsummary:       {run.summary_md}")


def _validate(path: Path, force: bool) -> int:
    loaded = load_plan(path)
    host_warnings = _preflight(path, loaded, force, starting=False)
    plan, serve = loaded.plan, loaded.plan.serve
    print(f"plan {plan.name} ({path}): valid")
    if isinstance(serve, DockerServe):
        target = f"docker image {serve.image}, network {serve.network}, gpus {serve.gpus}, ipc {serve.ipc}"
    elif isinstance(serve, ExternalServe):
        target = f"external server at {serve.url} (probed, never started or stopped)"
    else:
        target = "process: " + " ".join(loaded.serve_command())
    print(f"  target: {target}")
    for arm in plan.arms:
        env = ", ".join(f"{k}={v}" for k, v in arm.env.items()) or "no env"
        print(f"  arm {arm.name}: {env}")
    steps = plan.steps()
    modes = ", ".join(f"{m}: {sum(s.mode == m for s in steps)}" for m in ("primary", "supplementary"))
    print(f"  steps: {len(steps)} in {len(plan.sessions())} serve sessions ({modes})")
    registry = load_registry(loaded.resolve(plan.gates.registries) if plan.gates.registries else None)
    for arm in plan.arms:
        for criterion in mechanism_gate(MechanismInput.declared_by(arm), registry).failed_criteria:
            if criterion.startswith(ACCEPTANCE_RULE) and arm.acceptance_rate is None:
                print(f"  note: arm {arm.name}: the acceptance rate is taken from the server's vllm:spec_decode_* "
                      "metrics at run time; declare acceptance_rate if it does not export them")  # fmt: skip
            else:
                print(f"  warning: arm {arm.name}: the mechanism gate will fail: {criterion}")
    if isinstance(serve, DockerServe):
        for source, target_path, option in serve.binds(loaded.resolve):
            if not source.exists():
                what = "a read-only mount: starting will fail" if option == "ro" else "it will be created at start"
                print(f"  warning: serve.mounts: {source} (for {target_path}) does not exist on this host; {what}")
    for finding in preflight_warnings(plan):
        print(f"  warning: {finding.topic}: {finding.message}")
    for warning in host_warnings:
        print(f"  warning: this host: {warning}")
    return 0


def _dispatch(args: argparse.Namespace) -> int:
    console = Console()
    if not console.is_terminal:  # logs and CI: no wrapping at rich's 80-column default
        console = Console(width=160)
    if args.command == "bench":
        return bench_cli.run(args, console)
    if args.command is None:
        return _launch()
    if args.command == "attach":
        return _attach(open_run(args.run_dir), args.readonly)
    if args.command == "watch":
        return watch_cli.run(args)
    if args.command == "serve-web":
        return web_cli.run(args)
    if args.command in ("report", "compare"):
        return report_cli.run(args, console)
    if args.command == "results":
        return results_cli.run(args, console)
    if args.command == "validate":
        return _validate(args.plan, args.force)
    if args.command == "abort":
        run = open_run(args.run_dir)
        if not runner_alive(run):
            raise CliError(f"no runner is working on {run.root}; nothing to abort", code=1)
        request_abort(run, "gb10-console abort", by="cli")
        print(f"abort requested for {run.root}; the runner stops the serve target and marks the run resumable")
        return 0
    plan = DEMO_PLAN if args.command == "demo" else args.plan
    run = _start(args, plan)
    if args.headless:
        return _headless(run, console)
    if not sys.stdout.isatty():
        print("no terminal on stdout: running headless (pass --headless to skip this note)", file=sys.stderr)
        return _headless(run, console)
    return _interactive(run)


def main(argv: list[str] | None = None) -> int:
    """Entry point; returns the exit code (0 ok, 1 failed, 2 bad input, 3 aborted and resumable)."""
    args = _parser().parse_args(argv)
    try:
        return _dispatch(args)
    except ConfigFileError as exc:
        print("error: invalid plan:\n  " + "\n  ".join(exc.problems), file=sys.stderr)
        return EXIT_BAD_INPUT
    except RunDirError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except CliError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exc.code
    except OSError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("interrupted before the soak started; nothing is running", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
