"""`targets.json`: the live serve targets of a run, listed by the runner and read by the guard.

Each entry is enough to find a target, check its label and end it: a process group leader (pid and
start time) or a container (id and engine socket).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

from runners.run.files import read_json, write_json_atomic
from runners.run.rundir import RunDir

TARGETS_FILE = "targets.json"


@dataclass(frozen=True)
class TargetRef:
    """A serve target as the guard sees it: enough to find it, check its label, and end it."""

    kind: str  # "process" | "docker"
    arm: str
    mode: str
    pid: int | None = None  # process: the leader of its own process group
    start_ticks: int | None = None
    container: str | None = None  # docker: the container id
    socket: str | None = None

    @classmethod
    def from_dict(cls, d: dict) -> TargetRef:
        """Inverse of asdict (unknown keys ignored)."""
        fields = {k: d.get(k) for k in cls.__dataclass_fields__}
        return cls(**fields)


def targets_path(run: RunDir) -> Path:
    """Where the run's live targets are listed."""
    return run.root / TARGETS_FILE


def write_targets(run: RunDir, refs: list[TargetRef]) -> None:
    """Replace the list of live targets (atomically)."""
    write_json_atomic(targets_path(run), {"targets": [asdict(r) for r in refs]})


def read_targets(run: RunDir) -> list[TargetRef]:
    """The listed targets; [] when there is no list or it cannot be read."""
    try:
        data = read_json(targets_path(run))
    except (OSError, ValueError):
        return []
    items = data.get("targets") if isinstance(data, dict) else None
    return [TargetRef.from_dict(d) for d in items or [] if isinstance(d, dict)]
