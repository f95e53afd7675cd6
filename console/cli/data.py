"""`gb10-console data pull PLAN`: fetch the Hub datasets a plan reads into the HF cache; what `validate` and
`run` say about them.

`validate` lists each Hub file as cached (size, commit, sha256) or to fetch (its size, asked of the Hub
unless HF_HUB_OFFLINE is set) and passes either way. `run` fetches what is missing before anything starts;
when a file is neither cached nor reachable it refuses, saying to run `data pull` where the Hub is reachable.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from rich.console import Console

from console.cli.command import EXIT_FAILED, CliError, Subparsers
from engine.config_file import ConfigFileError
from engine.units import bytes_text
from runners.datasets.hub import HubError, cache_dir, endpoint, offline
from runners.datasets.plan_data import HubStatus, hub_files, hub_status, pull
from runners.plan.load import LoadedPlan, load_plan
from runners.replay.data_check import check_phase_data


def register(sub: Subparsers) -> None:
    """Add `data pull`."""
    data = sub.add_parser("data", help="datasets a plan reads: fetch them into the Hugging Face cache")
    verbs = data.add_subparsers(dest="data_command", metavar="VERB", required=True)
    pull_parser = verbs.add_parser("pull", help="fetch every Hub dataset PLAN reads into the HF cache, before a soak")
    pull_parser.add_argument("plan", type=Path)
    pull_parser.set_defaults(handler=pull_data)


def pull_data(args: argparse.Namespace, out: Console) -> int:
    """Fetch what the plan reads from the Hub (with a progress bar), check each file; 1 when any failed."""
    loaded = load_plan(args.plan)
    if not hub_files(loaded):
        print(f"{args.plan}: reads no Hub dataset (only local files or built-in prompts): nothing to fetch")
        return 0
    print(f"Hub {endpoint()}, cache {cache_dir()}" + (" (HF_HUB_OFFLINE: the cache alone)" if offline() else ""))
    errors = pull(loaded, print)
    for error in errors:
        print(f"error: {error}", file=sys.stderr)
    return EXIT_FAILED if errors else 0


def dataset_lines(loaded: LoadedPlan) -> list[str]:
    """validate's lines about the plan's Hub files: cached or to fetch (with size), and what to run."""
    try:
        statuses = hub_status(loaded)
    except HubError as exc:
        return [f"warning: dataset: {exc}"]
    lines = [_line(s) for s in statuses]
    missing = [s for s in statuses if s.copy is None]
    if missing:
        sizes = [s.to_fetch.size for s in missing if s.to_fetch and s.to_fetch.size is not None]
        total = f" ({bytes_text(sum(sizes))})" if len(sizes) == len(missing) else ""
        lines.append(
            f"datasets: {len(missing)} to fetch{total}: `gb10-console data pull {loaded.source}` "
            f"(or `run` fetches them first){' where the Hub is reachable' if offline() else ''}"
        )
    return lines


def _line(status: HubStatus) -> str:
    fields = ", ".join(status.fields)
    if status.copy is not None:
        copy = status.copy
        return (
            f"dataset {status.ref.label} ({fields}): cached, {bytes_text(copy.size)}, commit {copy.commit[:12]}, "
            f"sha256 {copy.sha256[:16]}…"
        )
    remote = status.to_fetch
    if remote is None or remote.size is None:
        why = remote.reason if remote is not None else "not asked"
        return f"dataset {status.ref.label} ({fields}): to fetch, size unknown ({why})"
    return f"dataset {status.ref.label} ({fields}): to fetch, {bytes_text(remote.size)}"


def ensure_datasets(path: Path, loaded: LoadedPlan) -> None:
    """Before a run starts anything: fetch the plan's Hub files not yet cached; CliError naming each one that
    is neither cached nor reachable (or damaged)."""
    if not hub_files(loaded):
        return
    errors = pull(loaded, lambda line: print(line, file=sys.stderr))
    if errors:
        lines = "\n  ".join(f"{path}: {error}" for error in errors)
        raise CliError(f"refused before anything started: a dataset cannot be read:\n  {lines}")


def checked_data_lines(path: Path, loaded: LoadedPlan) -> list[str]:
    """What each phase's data gives, read as its step will read it (validate's lines); raises ConfigFileError
    naming `path` and each phase whose data cannot be used, before any target starts."""
    checks = check_phase_data(loaded)
    errors = [check.error for check in checks if check.error]
    if errors:
        raise ConfigFileError(path, [f"{path}: {error}" for error in errors])
    return [f"data {check.where} ({check.phase}): {check.summary}" for check in checks]
