"""The runs under a runs directory, newest first, with whether a runner is working on each (for `gb10-console`)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from engine.config_file import ConfigFileError, read_toml
from runners.run.event_log import status_label
from runners.run.rundir import RunDir, runner_alive


@dataclass(frozen=True)
class RunEntry:
    """One run directory as the launcher lists it."""

    run: RunDir
    run_id: str
    plan: str
    status: str  # event_log.status_label(): state.json's label, or created, damaged, interrupted, incomplete
    live: bool
    modified: float  # mtime of state.json (else run.json): when the run last changed


def list_runs(runs_dir: Path, limit: int = 200) -> list[RunEntry]:
    """Run directories directly under `runs_dir`, most recently changed first (at most `limit`)."""
    if not runs_dir.is_dir():
        return []
    entries = []
    for path in runs_dir.iterdir():
        run = RunDir(path)
        if not path.is_dir() or not run.is_run():
            continue
        live = runner_alive(run)
        try:
            info = run.info()
            run.plan_dir()
        except (OSError, ValueError):  # DamagedRunFile: `gb10-console run --resume` says what to do
            info, status = {}, "damaged (run.json)"
        else:
            status = status_label(run, live=live)
        stamp = run.state_json if run.state_json.exists() else run.run_json
        try:
            modified = stamp.stat().st_mtime
        except OSError:
            modified = 0.0
        entries.append(RunEntry(run, str(info.get("run_id", path.name)), str(info.get("plan", "?")), status,
                                live, modified))  # fmt: skip
    entries.sort(key=lambda e: e.modified, reverse=True)
    return entries[:limit]


def newest_live(entries: list[RunEntry]) -> RunEntry | None:
    """The most recently changed run a runner is working on, if any."""
    return next((e for e in entries if e.live), None)


def plan_files(configs_dir: Path) -> list[Path]:
    """TOML files in `configs_dir` that look like plans (they have `[[arms]]`), by name."""
    if not configs_dir.is_dir():
        return []
    plans = []
    for path in sorted(configs_dir.glob("*.toml")):
        try:
            _, data = read_toml(path)
        except ConfigFileError:
            continue
        if isinstance(data.get("arms"), list):
            plans.append(path)
    return plans
