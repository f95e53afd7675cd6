"""`gb10-console`: run, resume, attach to, and abort soaks; `demo` runs configs/demo.toml.

One module per command family (run, attach, control, validate, data, report, results, bench, watch, web), each with
`register(subparsers)`; every parser names its handler, `handler(args, out) -> exit code`
(console/cli/command.py). `main` parses, calls the handler, and is the one place errors become exit codes.
"""

from __future__ import annotations

import argparse
import sys

from rich.console import Console

from console.cli import attach, bench, control, data, doctor, report, results, run, validate, watch, web
from console.cli.command import EXIT_BAD_INPUT, EXIT_FAILED, EXIT_INTERRUPTED, CliError
from engine.config_file import ConfigFileError
from runners.results_db.schema import ResultsDBError
from runners.run.rundir import RunDirError

FAMILIES = (run, attach, control, validate, doctor, data, report, results, bench, watch, web)  # in `--help`'s order


def parser() -> argparse.ArgumentParser:
    """The whole command line: every family's parsers; no command is the launcher (`attach.launch`)."""
    p = argparse.ArgumentParser(prog="gb10-console", description=__doc__.splitlines()[0])
    p.set_defaults(handler=attach.launch)  # none: attach to the newest live run, else offer to start one
    sub = p.add_subparsers(dest="command", metavar="COMMAND")
    for family in FAMILIES:
        family.register(sub)
    return p


def main(argv: list[str] | None = None, out: Console | None = None) -> int:
    """Entry point; returns the exit code (0 ok, 1 failed, 2 bad input, 3 aborted and resumable, 130 ^C before
    the soak started). `out`: where handlers print (default: stdout, 160 columns when it is not a terminal)."""
    args = parser().parse_args(argv)
    if out is None:
        out = Console()
        if not out.is_terminal:  # logs and CI: no wrapping at rich's 80-column default
            out = Console(width=160)
    try:
        return args.handler(args, out)
    except ConfigFileError as exc:
        print("error: invalid plan:\n  " + "\n  ".join(exc.problems), file=sys.stderr)
        return EXIT_BAD_INPUT
    except (RunDirError, ResultsDBError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except CliError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exc.code
    except OSError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_FAILED
    except KeyboardInterrupt:
        print("interrupted before the soak started; nothing is running", file=sys.stderr)
        return EXIT_INTERRUPTED


if __name__ == "__main__":
    sys.exit(main())
