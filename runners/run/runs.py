"""A run directory's API for whoever starts or watches a run: create one from a plan, open one, load its plan
copy, and start its runner detached. The console uses this; it never imports the orchestrator (runners.soak).
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from runners.plan.load import LoadedPlan, load_plan
from runners.run.files import apply_run_umask
from runners.run.plan_copy import restore_held_values
from runners.run.rundir import RunDir, RunDirError, create_run_dir

RUNNER_MODULE = "runners.execute"  # `python -m runners.execute RUN_DIR`: the detached runner's stable name


def create_run(plan_path: Path, out: Path | None, runs_root: Path) -> RunDir:
    """Validate the plan and create its run directory (private: `apply_run_umask`); raises ConfigFileError or
    RunDirError."""
    loaded = load_plan(plan_path)
    apply_run_umask()
    return create_run_dir(out, runs_root, loaded.source, loaded.plan.name, loaded.base_dir)


def open_run(path: Path) -> RunDir:
    """An existing run directory; raises RunDirError when `path` is not one or its run.json is damaged."""
    run = RunDir(path)
    if not run.is_run():
        raise RunDirError(f"{path} is not a run directory (no run.json); start one with `gb10-console run PLAN`")
    run.info()  # a damaged run.json is said here, with what to do, before anything else reads it
    return run


def load_run_plan(run: RunDir) -> LoadedPlan:
    """The run's copy of its plan, resolving relative paths against the original plan's directory; env values the
    copy does not hold are read again from the original plan (`restore_held_values`)."""
    source = run.info().get("plan_source")
    loaded = load_plan(run.plan_toml, base_dir=run.plan_dir())
    return restore_held_values(loaded, Path(source) if source else None)


def runner_command(run: RunDir) -> list[str]:
    """The detached runner's command line for `run`."""
    return [sys.executable, "-m", RUNNER_MODULE, str(run.root)]


def spawn_detached(run: RunDir) -> subprocess.Popen:
    """Start `python -m runners.execute RUN_DIR` in its own session (under the run's umask), output to runner.log."""
    apply_run_umask()
    with open(run.runner_log, "ab") as log:
        return subprocess.Popen(
            runner_command(run),
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
