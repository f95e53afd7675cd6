"""The command line is built from its families: every command names its handler, and every handler takes the
same two arguments; `main` calls it and turns errors into exit codes."""

from __future__ import annotations

import argparse
import inspect
from collections.abc import Iterator

from console.cli import FAMILIES, parser
from console.cli.attach import launch


def leaves(p: argparse.ArgumentParser, prefix: str = "") -> Iterator[tuple[str, argparse.ArgumentParser]]:
    """Every command that runs something, by its full name (`results ingest`)."""
    subs = [a for a in p._actions if isinstance(a, argparse._SubParsersAction)]
    if not subs:
        yield prefix.strip(), p
    for action in subs:
        for name, child in action.choices.items():
            yield from leaves(child, f"{prefix} {name}")


def test_every_command_names_a_handler_of_one_signature() -> None:
    commands = dict(leaves(parser()))
    assert set(commands) == {
        "run", "demo", "attach", "abort", "validate", "report", "compare", "results ingest", "results list",
        "results query", "results pareto", "bench client", "bench mock-server", "bench watchdog", "bench kernels",
        "watch", "serve-web", "doctor", "data pull",
    }  # fmt: skip
    for name, command in commands.items():
        handler = command.get_default("handler")
        assert callable(handler), name
        assert list(inspect.signature(handler).parameters) == ["args", "out"], name
    assert parser().parse_args([]).handler is launch  # no command: the launcher
    assert all(callable(family.register) for family in FAMILIES)
