"""The serve target's /health during a step: probed every few seconds, reported when it changes.

A target can stay up and stop answering (a wedged EngineCore, a profiler stall): its process or container
is alive, so `wait_exit` does not fire. The watch reports each change of health, not every probe, so a
seven-hour soak writes a handful of events, and the console shows the target's health next to its state.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable

from engine.deadlines import timeout
from runners.serve.runtime import ProbeResult

HEALTH_EVERY_S = 5.0


async def watch_health(
    probe: Callable[[], Awaitable[ProbeResult]],
    on_change: Callable[[ProbeResult], None],
    stop: asyncio.Event,
    every_s: float = HEALTH_EVERY_S,
    healthy: bool = True,
) -> None:
    """Probe every `every_s` until `stop` is set; call `on_change` when the answer differs from the last one.

    `healthy` is the last known answer (a target that just passed its readiness check is healthy; one whose
    /health failed in the previous step is not), so a watch per step reports changes, not repeats. Each probe
    is bounded by the probe's own timeout; a probe that raises counts as unhealthy.
    """
    while not stop.is_set():
        with contextlib.suppress(asyncio.TimeoutError):
            async with timeout(every_s):
                await stop.wait()
        if stop.is_set():
            return
        try:
            result = await probe()
        except Exception as exc:  # a monitor that breaks must not end the step it watches
            result = ProbeResult(False, None, f"the probe itself failed: {type(exc).__name__}: {exc}")
        if result.healthy != healthy:
            healthy = result.healthy
            on_change(result)
