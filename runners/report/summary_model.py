"""summary.json as one typed model: the report writes it (`runners/report/summary.py`), the console, the headless
printer and anyone else read it back with `read_summary`.

The JSON keeps these field names (scripts read them); a field this version does not know is ignored. Sections
copied from a step's phase.json (its stats, server latency, profile, region timings) stay objects as phase.json
has them. `read_summary` never raises: a file that is not JSON, or whose fields do not fit this model (damaged
by hand or by the disk, or written by an older version), reads as `DamagedSummary`, which says what is wrong
and how to write it again.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Discriminator, Tag, ValidationError

from runners.gates.plan_diff import PlanDifference
from runners.gates.reproduction import DeltaRow
from runners.gates.result import GateResult
from runners.plan.steps import StepKey
from runners.replay.measurement_check import MeasurementCheck
from runners.replay.metrics import PhaseStats
from runners.replay.pauses import PauseAccount
from runners.run.files import write_json_atomic

_MODEL = ConfigDict(frozen=True, extra="ignore")


class ArmSummary(BaseModel):
    """One arm: its env as run, its primary steps pooled (`stats`), the seconds paused, its verdict and GSM8K."""

    model_config = _MODEL

    arm: str
    arm_env: str  # the arm's own keys as K=V, with the values the target reported
    env_status: str  # verified | unverified | mismatch | not started
    env_where: str | None  # the process that verified the env
    steps_done: int
    steps_total: int
    stats: PhaseStats  # the arm's primary steps pooled
    paused_s: float  # dispatch paused during its primary steps
    paused_excluded_s: float  # of it, left out of the wall time (nothing in flight)
    verdict: str | None
    gsm8k_correct: float | None
    gsm8k_questions: int | None


class PendingStep(BaseModel):
    """A step of the plan that is not DONE."""

    model_config = _MODEL

    step: StepKey
    kind: str
    done: Literal[False]
    results: str
    stats: None


class DoneStep(BaseModel):
    """A DONE step: its results line, its phase.json sections, its pause account and its latency cross-check."""

    model_config = _MODEL

    step: StepKey
    kind: str
    done: Literal[True]
    results: str  # in a few words: GSM8K, coherence, goodput, server metrics, prompts dropped
    stats: dict | None  # phase.json `stats` (PhaseStats as that step wrote it)
    pause: PauseAccount
    server_latency: dict | None  # phase.json `server_latency`
    measurement: MeasurementCheck
    profile: dict | None  # phase.json `profile`
    region_timings: dict | None  # phase.json `region_timings`


def _step_state(row: object) -> str:
    """Which model a step row is read as: `done` or `not done` (what a damage message names after the row)."""
    done = row.get("done") if isinstance(row, dict) else getattr(row, "done", None)
    return "done" if done is True else "not done"


StepSummary = Annotated[
    Annotated[DoneStep, Tag("done")] | Annotated[PendingStep, Tag("not done")], Discriminator(_step_state)
]


class RegistrySource(BaseModel):
    """Where the kernel-correctness registries were read from, and what could not be read."""

    model_config = _MODEL

    directory: str
    errors: tuple[str, ...]


class Summary(BaseModel):
    """summary.json: the run, per-arm rows, every step, the gates and verdicts, the reproduction Δ rows,
    known limitations and the plots written. The report writes every field; one a summary lacks reads as none
    of it (no arms, no gates, ...), so a summary written before a field existed still reads."""

    model_config = _MODEL

    run_id: str
    plan: str
    status: str
    baseline: str | None = None
    deciding_phases: dict[str, str | None] = {}  # gsm8k, wall, tpot, long_decode: the phase each gate reads
    arms: tuple[ArmSummary, ...] = ()
    steps: tuple[StepSummary, ...] = ()
    gates: tuple[GateResult, ...] = ()
    verdicts: dict[str, str] = {}  # arm -> verdict, in plan order
    reproduction_rows: tuple[DeltaRow, ...] = ()
    prior_run: str | None = None
    plan_differences: tuple[PlanDifference, ...] = ()  # prior vs this run: reproduction is then not comparable
    limitations: tuple[str, ...] = ()
    plots: tuple[str, ...] = ()  # relative to the run directory
    registries: RegistrySource | None = None  # None: not recorded (an older summary)


@dataclass(frozen=True)
class DamagedSummary:
    """A summary.json that cannot be read as a `Summary`: `reason` says what is wrong and how to write it again."""

    path: Path
    reason: str


def write_summary(path: Path, summary: Summary) -> None:
    """Write `summary` to `path` atomically, as indented JSON."""
    write_json_atomic(path, summary.model_dump(mode="python"))


def read_summary(path: Path) -> Summary | DamagedSummary | None:
    """summary.json at `path` as its model; None while there is none; never raises."""
    try:
        data = json.loads(path.read_bytes())
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:
        return _damaged(path, f"not readable as JSON ({exc})")
    try:
        return Summary.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(part) for part in first["loc"]) or "the top level"
        more = f" (and {exc.error_count() - 1} more)" if exc.error_count() > 1 else ""
        return _damaged(path, f"{where}: {first['msg']}{more}")


def _damaged(path: Path, what: str) -> DamagedSummary:
    again = f"`gb10-console report {path.parent}` writes it again"
    return DamagedSummary(path, f"{path} is damaged or was written by an older version: {what}; {again}")
