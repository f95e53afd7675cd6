"""One step's replay and everything that watches it, owned by one async context manager (`StepWatch`).

Entering opens the evidence writers (requests.jsonl, server_metrics.jsonl) and starts, in this order:
the /metrics sampler (when the phase scrapes), the server latency snapshot, a wait of at most one scrape
deadline for the first scrape (vLLM renders /metrics on the loop that streams: keep it off the first
requests), then the replay beside the target-death watch, the /health watch, the deadline (pauses not
counted) and the stall watch (which holds the replay's dispatch while it suspects a stall, and for good once it
sees one). `first_end` waits for the first of them to end, or for a memory alarm.

Leaving tears them down in this order: the stall watch and the deadline are cancelled; a replay still
running is cancelled and awaited; scraping stops and the sampler is awaited (its last scrape covers the
step's end); the /health watch is cancelled (a probe in flight against a wedged target is not worth
waiting for) and its error kept; both writers are closed, their errors kept. On a clean exit those errors
are raised then (a run-dir write error of the replay first, then the writers', then the health
watch's), and how the target ended during the step is settled (`ended`).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable
from pathlib import Path
from types import TracebackType

from runners.plan.phases import PhaseBase
from runners.replay.dispatch import ReplayOutcome, replay
from runners.replay.dispatch_gate import DispatchGate
from runners.replay.records import RequestRecord
from runners.replay.server_metrics import MetricsSampler
from runners.replay.workloads import Workload
from runners.run.files import JsonlWriter, RunDirWriteError
from runners.serve.health_watch import watch_health
from runners.serve.runtime import ExitInfo, ProbeResult, ServeRuntime
from runners.soak.progress import ProgressReporter
from runners.soak.server_latency_probe import StepLatencyProbe
from runners.soak.stall_watch import Stall, StallWatch, stall_s_of
from runners.soak.step_context import StepContext

TARGET_DEATH_GRACE_S = 2.0
SERVER_METRICS_FILE = "server_metrics.jsonl"


class StepWatch:
    """The step's replay, the target-death watch, the /health watch, the /metrics sampler, the deadline, the
    stall watch and the evidence writers: started on entry, torn down on exit (see the module docstring)."""

    def __init__(
        self,
        ctx: StepContext,
        runtime: ServeRuntime,
        model: str,
        phase: PhaseBase,
        workload: Workload,
        step_dir: Path,
        progress: ProgressReporter,
        on_health: Callable[[ProbeResult], None],
    ) -> None:
        self.ctx, self.runtime, self.model, self.phase, self.workload = ctx, runtime, model, phase, workload
        self.step_dir, self.progress, self.on_health = step_dir, progress, on_health
        self.samples: list[dict] = []  # every /metrics scrape of the step
        self.stall_watch = StallWatch(stall_s_of(phase), scraping=phase.metrics_interval_s is not None)
        self.latency = StepLatencyProbe(runtime.base_url + "/metrics")
        self.ended: ExitInfo | None = None  # how the target ended during the step (set on a clean exit)
        self._first_sample = asyncio.Event()
        self._stop_scraping = asyncio.Event()
        self._sampler_task: asyncio.Task | None = None

    @property
    def scraping(self) -> bool:
        """Whether the phase scrapes /metrics (`samples` is its summary's input)."""
        return self._sampler_task is not None

    @property
    def finished(self) -> bool:
        """Whether the replay ran to its end (it was not cut short by the deadline, the target, a stall or memory)."""
        return not self._replay_task.cancelled()

    def outcome(self) -> ReplayOutcome:
        """The replay's outcome; only once it `finished`."""
        return self._replay_task.result()

    async def __aenter__(self) -> StepWatch:
        """Open the writers; start the sampler, the latency snapshot, then the replay and its watchers."""
        ctx, phase = self.ctx, self.phase
        self._requests = JsonlWriter(self.step_dir / "requests.jsonl")
        self._scrapes = JsonlWriter(self.step_dir / SERVER_METRICS_FILE)
        if phase.metrics_interval_s is not None:
            scraper = MetricsSampler(self.runtime.base_url + "/metrics", self._on_sample,
                                     interval_s=phase.metrics_interval_s)  # fmt: skip
            self._sampler_task = asyncio.create_task(scraper.run(self._stop_scraping))
        await self.latency.start()
        if self._sampler_task is not None:
            await _first_sample(self._first_sample, self._sampler_task, scraper.deadline_s)
        paused_before = ctx.gate.paused_s()
        workload = self.workload
        self._replay_task = asyncio.create_task(
            replay(
                self.runtime.base_url, self.model, workload.conversations, workload.shape, workload.arrivals,
                self._on_record, ctx.abort, limit_requests=phase.limit_requests, gate=ctx.gate,
                activity=self.stall_watch.activity, hold=self.stall_watch.hold,
            )
        )  # fmt: skip
        self._replay_task.add_done_callback(_retrieve)  # its error is read on the way out, on every path
        self._died_task = asyncio.create_task(self.runtime.wait_exit())
        self._health_task = asyncio.create_task(
            watch_health(self.runtime.probe, self.on_health, self._stop_scraping,
                         ctx.loaded.plan.serve.health_interval_s, ctx.healthy)
        )  # fmt: skip
        self._deadline_task = asyncio.create_task(_deadline(phase.deadline_s, ctx.gate, paused_before))
        self._stall_task = asyncio.create_task(self.stall_watch.watch(ctx.events, self.progress.step))
        return self

    async def first_end(self) -> Stall | None:
        """Wait until the replay ends, the target ends, the deadline passes, a stall is seen or memory alarms;
        the Stall when that is what ended the wait."""
        watched = {self._replay_task, self._died_task, self._deadline_task, self._stall_task} | self.ctx.memory.tasks()
        await asyncio.wait(watched, return_when=asyncio.FIRST_COMPLETED)
        return self._stall_task.result() if self._stall_task.done() else None

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        """Tear everything down in order; on a clean exit raise what failed, then settle `ended`."""
        self._stall_task.cancel()
        self._deadline_task.cancel()
        if not self._replay_task.done():
            self._replay_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._replay_task
        self._stop_scraping.set()
        if self._sampler_task is not None:
            await self._sampler_task
        self._health_task.cancel()  # a probe in flight against a wedged target is not worth waiting for
        health_error = (await asyncio.gather(self._health_task, return_exceptions=True))[0]
        closing = [_close_quietly(self._requests), _close_quietly(self._scrapes)]
        if exc_type is not None:
            return
        if not self._replay_task.cancelled() and isinstance(self._replay_task.exception(), RunDirWriteError):
            raise self._replay_task.exception()  # type: ignore[misc]
        for error in (*closing, health_error):
            if isinstance(error, Exception):  # health_error may be the CancelledError of its own stop
                raise error
        self.ended = await _target_ended(self._died_task, self._replay_task)

    def _on_record(self, rec: RequestRecord) -> None:
        """A request ended: its line in requests.jsonl, and the step's progress."""
        self._requests.append(rec.as_dict())
        self.progress.add(rec)

    def _on_sample(self, sample: dict) -> None:
        """A /metrics scrape: kept for the summary, written to server_metrics.jsonl, shown to the stall watch."""
        self.samples.append(sample)
        self._scrapes.append(sample)
        self.stall_watch.on_sample(sample)
        self._first_sample.set()


async def _deadline(deadline_s: float, gate: DispatchGate, paused_before: float) -> None:
    """Return once a step has run `deadline_s` seconds, not counting time dispatch was paused."""
    started = time.monotonic()
    while True:
        ran = time.monotonic() - started - (gate.paused_s() - paused_before)
        if ran >= deadline_s:
            return
        await asyncio.sleep(min(deadline_s - ran, 1.0))


async def _target_ended(died: asyncio.Task[ExitInfo], replay_task: asyncio.Task) -> ExitInfo | None:
    """How the target ended during the step, or None if it still runs.

    Failed requests are often the first sign of a dead target, before its watcher sees it exit: then
    the watcher gets TARGET_DEATH_GRACE_S to confirm, so the step names the cause.
    """
    failures = replay_task.cancelled() or any(r.error for r in replay_task.result().records)
    if failures and not died.done():
        await asyncio.wait({died}, timeout=TARGET_DEATH_GRACE_S)
    if not died.done():
        died.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await died
        return None
    return died.result() if died.exception() is None else None


async def _first_sample(seen: asyncio.Event, sampler: asyncio.Task, deadline_s: float) -> None:
    """Wait (at most one scrape deadline) for the sampler's first scrape, or its end."""
    waiter = asyncio.create_task(seen.wait())
    await asyncio.wait({waiter, sampler}, timeout=deadline_s, return_when=asyncio.FIRST_COMPLETED)
    waiter.cancel()


def _retrieve(task: asyncio.Task) -> None:
    """Mark a task's exception as seen (the step reads and reports it itself)."""
    if not task.cancelled():
        task.exception()


def _close_quietly(writer: JsonlWriter) -> RunDirWriteError | None:
    """Close a writer; the error instead of raising it (the step decides what it means)."""
    try:
        writer.close()
    except RunDirWriteError as exc:
        return exc
    return None
