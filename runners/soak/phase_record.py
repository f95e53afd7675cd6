"""phase.json of a step whose replay finished: what ran, against what, how it measured, what it answered.

A step that a stall ended writes another record (`stall_watch.stalled_step_record`); a step cut short by
its deadline, its target's end or a memory alarm writes none.
"""

from __future__ import annotations

from dataclasses import dataclass

from runners.plan.phases import PhaseBase
from runners.plan.steps import StepKey
from runners.replay.dispatch import ReplayOutcome
from runners.replay.measurement_check import MeasurementCheck
from runners.replay.metrics import PhaseStats
from runners.replay.pauses import PauseAccount
from runners.replay.server_latency import ServerLatency
from runners.replay.usage_probe import UsageProbe
from runners.soak.profiler import ProfileRecord


@dataclass(frozen=True)
class PhaseRecord:
    """Everything phase.json holds for a finished replay; `as_dict` is the file's content."""

    step: StepKey
    phase: PhaseBase
    started_at: float
    ended_at: float
    outcome: ReplayOutcome  # its `aborted`, its own wall time (pauses included) and the stall watch's holds
    pause: PauseAccount  # dispatch held during the replay (runners/replay/pauses.py)
    target: dict  # the runtime's inspect after the replay
    target_ended: str | None  # how the target ended during the step, None if it runs
    profile: ProfileRecord | None
    prompt_filter: dict  # what was dropped for length, and why
    usage_probe: UsageProbe  # whether requests asked for usage on every chunk
    stats: PhaseStats  # over the step's wall time less the pause's idle part
    server_metrics: dict | None  # the /metrics summary; None when the phase does not scrape
    server_latency: ServerLatency
    measurement: MeasurementCheck  # client vs server
    region_timings: dict | None
    kind_results: dict  # the kind's own results (`workloads.evaluate`: gsm8k, coherence)

    def as_dict(self) -> dict:
        """phase.json: the record's fields in the file's order, the kind's own results last."""
        return {
            "step": self.step.as_dict(),
            "phase": self.phase.model_dump(),
            "started_at": self.started_at,
            "ended_at": self.ended_at,
            "aborted": self.outcome.aborted,
            "paused_s": round(self.pause.paused_s, 3),
            "pause": self.pause.as_dict(),  # its idle part is left out of stats.wall_s
            "wall_clock_s": round(self.outcome.wall_s, 3),  # the replay's wall time, pauses included
            "stall_hold": stall_hold(self.outcome.holds),  # dispatch held by suspected stalls that cleared
            "target": self.target,
            "target_ended": self.target_ended,
            "profile": self.profile.as_dict() if self.profile else None,
            "prompt_filter": self.prompt_filter,
            "usage_probe": self.usage_probe.as_dict(),
            "itl_basis": self.stats.itl_basis,
            "stats": self.stats.as_dict(),
            "server_metrics": self.server_metrics,
            "server_latency": self.server_latency.as_dict(),
            "measurement": self.measurement.as_dict(),
            "region_timings": self.region_timings,
            **self.kind_results,
        }


def stall_hold(holds: tuple[tuple[float, float], ...]) -> dict:
    """phase.json `stall_hold`: how often and how long a suspected stall held dispatch (`held_s`, counted in the
    wall time: the wait was the engine's), and when (`holds`: [from, to] seconds from the phase start)."""
    return {"count": len(holds), "held_s": round(sum(b - a for a, b in holds), 3),
            "holds": [[round(a, 3), round(b, 3)] for a, b in holds]}  # fmt: skip
