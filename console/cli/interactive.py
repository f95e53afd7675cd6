"""The console app on a terminal: what `run`, `demo`, `--resume`, `attach` and the launcher open."""

from __future__ import annotations

import os
import subprocess
import sys

from runners.run.rundir import RunDir, runner_alive


def has_screen() -> bool:
    """The console can draw: stdout is a terminal, or a Textual driver of its own is named (serve-web's)."""
    return sys.stdout.isatty() or bool(os.environ.get("TEXTUAL_DRIVER"))


def show_console(
    run: RunDir, runner: subprocess.Popen | None = None, runner_log_from: int | None = None, readonly: bool = False
) -> int:
    """Open the console on `run` until the person quits it (the soak keeps running), then say where things are."""
    from console.app import RunConsole  # Textual's app: only for a command that draws it

    _terminal_sizes_itself()
    RunConsole(run, runner, readonly=readonly, runner_log_from=runner_log_from).run()
    _after_console(run)
    return 0


def _terminal_sizes_itself() -> None:
    """On a terminal, drop an exported COLUMNS/LINES: Textual would take it over the terminal's own size, even
    after a resize (the web driver gets its size from the browser and has no terminal on stdout)."""
    if sys.stdout.isatty():
        for name in ("COLUMNS", "LINES"):
            os.environ.pop(name, None)


def _after_console(run: RunDir) -> None:
    if runner_alive(run):
        print(
            f"The soak keeps running in the background.\n"
            f"  reattach: gb10-console attach {run.root}\n  abort:    gb10-console abort {run.root}"
        )
    elif run.summary_md.exists():
        print(f"run directory: {run.root}\nsummary:       {run.summary_md}")
