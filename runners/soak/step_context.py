"""What every step of a session shares: the run's files, plan, events and ledger, the session's abort,
dispatch gate and memory watch, and what is known of the serve target across its steps."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

from runners.plan.load import LoadedPlan
from runners.replay.dispatch_gate import DispatchGate
from runners.replay.usage_probe import UsageProbe
from runners.run.events import EventLog
from runners.run.rundir import RunDir
from runners.soak.ledger import RunLedger
from runners.soak.memory_watch import MemoryWatch


@dataclass
class StepContext:
    """What every step of a session shares."""

    run_dir: RunDir
    loaded: LoadedPlan
    events: EventLog
    ledger: RunLedger
    abort: asyncio.Event
    gate: DispatchGate
    memory: MemoryWatch
    healthy: bool = True  # the target's last /health answer, carried from step to step
    oom_kills_seen: int = 0  # the target's cgroup OOM kills already reported
    token_counts: dict[bytes, int] = field(default_factory=dict)  # /tokenize answers of this target, by body
    usage_probes: dict[str, UsageProbe] = field(default_factory=dict)  # per endpoint, once per target
