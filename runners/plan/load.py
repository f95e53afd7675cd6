"""Soak plans from TOML files: validated models whose errors name the file, the line and the field.

A plan has a serve target (a local process, a Docker container, or an external URL), arms (each
an environment for the target), and phases (workloads run against every arm; each phase has a
`kind`: sharegpt, longdecode, gsm8k, concurrent or trace).
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path

from engine.config_file import ConfigFileError, load_toml_model
from runners.plan.data_refs import LocalFile, names_for
from runners.plan.env_reach import env_errors
from runners.plan.model import Plan
from runners.plan.phases import phase_data
from runners.plan.serve_spec import ProcessServe


@dataclass(frozen=True)
class LoadedPlan:
    """A validated plan and the directory its relative paths are resolved against."""

    plan: Plan
    source: Path
    base_dir: Path

    def resolve(self, relative: str) -> Path:
        """A plan-relative path made absolute."""
        p = Path(relative).expanduser()
        return p if p.is_absolute() else (self.base_dir / p).resolve()

    def serve_command(self, python: str = sys.executable) -> list[str]:
        """A process target's argv with placeholders still in it ({host} {port} {env_dir} {profile_dir})."""
        serve = self.plan.serve
        if not isinstance(serve, ProcessServe):
            raise TypeError(f"serve_command is for process targets, not {serve.kind}")
        if serve.command:
            plan_dir = str(self.base_dir)
            return [part.replace("{python}", python).replace("{plan_dir}", plan_dir) for part in serve.command]
        return [
            python, "-m", "engine.server",
            "--config", str(self.resolve(serve.engine_config or "")),
            "--host", "{host}", "--port", "{port}", "--env-dir", "{env_dir}",
        ]  # fmt: skip


def load_plan(path: Path, base_dir: Path | None = None) -> LoadedPlan:
    """Load and validate a plan file; raises ConfigFileError naming file, line and field.

    `base_dir` overrides where relative paths point (a resumed run's copy of the plan keeps
    resolving against the original plan's directory).
    """
    plan = load_toml_model(path, Plan)
    loaded = LoadedPlan(plan, path.resolve(), (base_dir or path.resolve().parent))
    problems = []
    serve = plan.serve
    if isinstance(serve, ProcessServe) and serve.engine_config and not loaded.resolve(serve.engine_config).is_file():
        problems.append(f"{path}: serve.engine_config: {loaded.resolve(serve.engine_config)} does not exist")
    else:
        problems += [f"{path}: {problem}" for problem in env_errors(plan, loaded.resolve)]
    for i, phase in enumerate(plan.phases):
        for field, ref in phase_data(phase).items():
            if isinstance(ref, LocalFile) and not loaded.resolve(ref.path).is_file():
                problems.append(f"{path}: phases[{i}].{field}: {_missing(loaded.resolve(ref.path), field)}")
    if problems:
        raise ConfigFileError(path, problems)
    return loaded


def _missing(file: Path, field: str) -> str:
    """Why a local data file cannot be read, and what else the field takes."""
    what = "is a directory, not a file" if file.is_dir() else "does not exist"
    names = " or ".join(f'"{name}"' for name in names_for(field))
    builtin = '"builtin", ' if field == "dataset" else ""
    named = f"{names} (fetched from the Hugging Face Hub), " if names else ""
    return f"{file} {what} (use {builtin}{named}hf://owner/repo@revision/path or a file)"
