"""What every command family of the CLI shares: the handler signature, CliError and the exit codes.

A family module (`run.py`, `attach.py`, ...) has `register(subparsers)`, which adds its parsers, each with
`set_defaults(handler=...)`; `console.cli.main` parses and calls `args.handler(args, out)`, and turns a
CliError (or a bad plan, run directory or file) into one `error: ...` line and its exit code.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable

from rich.console import Console

# exit codes: 0 ok; 1 failed; 2 bad input; 3 the soak was aborted and stays resumable (the runner's own code)
EXIT_FAILED = 1
EXIT_BAD_INPUT = 2
EXIT_INTERRUPTED = 130  # ^C before the soak started

Handler = Callable[[argparse.Namespace, Console], int]  # (the parsed arguments, where to print) -> exit code
Subparsers = argparse._SubParsersAction  # what `register` adds its parsers to


class CliError(Exception):
    """A problem to report in one line, with the exit code to use."""

    def __init__(self, message: str, code: int = EXIT_BAD_INPUT) -> None:
        super().__init__(message)
        self.code = code
