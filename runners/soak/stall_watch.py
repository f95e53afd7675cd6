"""The stall detector beside each step: a wedged engine that still answers /health is killed in seconds.

Users report engines that look healthy while wedged: `/health` answers, `num_requests_running` > 0,
`generation_tokens_total` frozen. Without this watch such an engine is caught only by the step deadline or
each request's `http_timeout_s` (1,800 s in some plans).

The rule (`stall_verdict`, pure): a stall is requests in flight (`in_flight` > 0) while **no stream has
received a chunk for `stall_s`** (the quiet clock: `runners.replay.activity`) **and**, where the step scrapes
/metrics, the generation-token counter did not move in the last `stall_s` (two or more ok scrapes that
started in that window all read the same value). A counter that moved means the engine is working (for
another client, say), so it is no stall; a long prefill of ours moves neither chunks nor the counter, so a
phase with very long prompts needs a larger `stall_s`. Fewer than two ok scrapes in the window (a target
that does not answer /metrics, or a step that does not scrape it) leave the streams alone to decide.
`num_requests_running` is evidence, not a condition: a front end that hangs requests before they reach the
engine (the embedded engine's `zombie` fault) shows 0 running.

`stall_s` (a phase field): when the plan does not set it, `default_stall_s(http_timeout_s)` =
min(http_timeout_s, max(STALL_FLOOR_S, http_timeout_s / STALL_TIMEOUT_SHARE)): at least a minute of total
silence (far beyond any decode step, a first prefill or a torch.compile warm-up a plan expects), growing with
a plan that allows each request a long time (a slow, profiled or long-prompt pass: 1,800 s gives 180 s), and
never past one request's own deadline. The watch polls every stall_s / 10 (between 0.05 and 1 s), so a stall
is seen within stall_s + one poll of the last chunk.

Before the kill, the suspicion (issue 31). The same rule over half the window (`suspect_s` = stall_s *
SUSPECT_SHARE: streams silent for suspect_s with requests in flight, and the token counter still over the last
suspect_s) is a suspected stall: the watch closes its hold (`hold`, a DispatchGate of the step's own, which
dispatch waits on beside the operator's pause) and emits `stall_suspected`; no new request starts. A chunk on
any stream, or a move of the counter, clears it (`stall_cleared`, the hold reopens and dispatch continues); a
stall keeps it closed for good. Requests that end without a byte while it is held (their `http_timeout_s` passed)
are not replaced, and the requests in flight when the suspicion began still count as in flight for the stall
rule: an engine whose requests all timed out during the suspicion is still killed at stall_s, instead of being
fed new requests that restart the quiet clock (`StreamActivity.started`) and hide the stall. Half of stall_s:
at the default (a minute or more) that is 30 s of total silence, beyond any decode step or the prefill of a
prompt the plan allows, so a merely slow engine is rarely held; when it is (a long prefill of ours moves
neither chunks nor the counter), the hold only keeps new work off an engine that already has work, and the
engine's first chunk reopens it within one poll: held, never starved. A counter that moves (the engine
generates, for us or another client) never suspects. The other half leaves requests that went in flight up to
stall_s / 2 before the silence time to be held before their own deadline when `http_timeout_s` = stall_s; a
hold is seen within suspect_s + one poll.

On a stall (`StallWatch.kill`) the target is killed through its runtime (an external server is not ours to
kill), `engine_stalled` is emitted, and the step fails as a dead target's would: the session moves on to the
next arm. A target that cannot be killed ends the run (the next arm must not share the GPU with it).
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Sequence
from dataclasses import asdict, dataclass

from runners.plan.phases import PhaseBase
from runners.plan.steps import StepKey
from runners.replay.activity import StreamActivity
from runners.replay.dispatch_gate import DispatchGate
from runners.replay.server_metrics import summarize as summarize_metrics
from runners.run.event_types import EngineStalled, StallCleared, StallSuspected
from runners.run.events import EventLog
from runners.serve.runtime import ServeError, ServeRuntime
from runners.soak.ledger import RunLedger

STALL_FLOOR_S = 60.0
STALL_TIMEOUT_SHARE = 10.0
POLL_MIN_S = 0.05
POLL_MAX_S = 1.0
SUSPECT_SHARE = 0.5


def default_stall_s(http_timeout_s: float) -> float:
    """min(http_timeout_s, max(STALL_FLOOR_S, http_timeout_s / STALL_TIMEOUT_SHARE)): the rule above."""
    return min(http_timeout_s, max(STALL_FLOOR_S, http_timeout_s / STALL_TIMEOUT_SHARE))


def stall_s_of(phase: PhaseBase) -> float:
    """The phase's `stall_s`, or the default sized from its `http_timeout_s`."""
    return phase.stall_s if phase.stall_s is not None else default_stall_s(phase.http_timeout_s)


def poll_interval_s(stall_s: float) -> float:
    """How often the watch looks: stall_s / 10, between POLL_MIN_S and POLL_MAX_S."""
    return min(POLL_MAX_S, max(POLL_MIN_S, stall_s / 10))


@dataclass(frozen=True)
class TokenSample:
    """One ok /metrics scrape as the detector reads it: when it started (monotonic s), the generation-token
    counter and the running gauge (None where the server does not export them)."""

    t: float
    tokens: float | None
    running: float | None


@dataclass(frozen=True)
class Stall:
    """What the detector saw: quiet seconds, requests in flight, and the /metrics evidence (None: none)."""

    quiet_s: float
    stall_s: float
    in_flight: int
    tokens: float | None
    running: float | None
    metrics: str  # what /metrics showed over the window, in words

    def describe(self) -> str:
        """e.g. `engine stalled for 2.2 s (requests in flight 2, tokens frozen at 118)`."""
        tokens = f"tokens frozen at {self.tokens:g}" if self.tokens is not None else f"tokens unknown: {self.metrics}"
        return f"engine stalled for {self.quiet_s:.1f} s (requests in flight {self.in_flight}, {tokens})"


def stall_verdict(
    now: float, in_flight: int, quiet_since: float, samples: Sequence[TokenSample] | None, stall_s: float
) -> Stall | None:
    """A Stall when `in_flight` > 0, now − `quiet_since` ≥ `stall_s` and the token counter did not move, else None.

    `samples`: the ok /metrics scrapes (any order), None when the step does not scrape /metrics. Those that
    started in [now − stall_s, now] and carry the counter are the window; the counter moved when they read
    more than one value (a reset reads as a move). With fewer than two the streams decide alone. The Stall's
    `tokens` and `running` are the latest window scrape's (`running` also from a scrape without the counter).
    """
    if in_flight <= 0 or now - quiet_since < stall_s:
        return None
    quiet_s = round(now - quiet_since, 3)  # as the event records it: its reason and its figure say the same
    if samples is None:
        return Stall(quiet_s, stall_s, in_flight, None, None, "/metrics not scraped (metrics_interval_s unset)")
    window = sorted((s for s in samples if now - stall_s <= s.t <= now), key=lambda s: s.t)
    counted = [s for s in window if s.tokens is not None]
    running = window[-1].running if window else None
    if len({s.tokens for s in counted}) > 1:
        return None
    if len(counted) < 2:
        seen = "no ok /metrics scrape" if not window else f"{len(counted)} scrape(s) with the token counter"
        return Stall(quiet_s, stall_s, in_flight, None, running, f"{seen} in the last {stall_s:g} s")
    tokens = counted[-1].tokens
    words = f"generation tokens frozen at {tokens:g} over {len(counted)} scrapes, running {_count(running)}"
    return Stall(quiet_s, stall_s, in_flight, tokens, running, words)


def _count(value: float | None) -> str:
    return "not exported" if value is None else f"{value:g}"


@dataclass(frozen=True)
class StallIncident:
    """A stall and what was done about it: how the target ended (or why it was not killed) and how long that took."""

    stall: Stall
    how: str
    kill_s: float
    kill_failed: str | None = None  # why the kill did not succeed (the run must end), None when it did
    held_s: float = 0.0  # dispatch held by the suspicion that ended in this stall, until the kill began

    def reason(self) -> str:
        """The step's failure words."""
        return (
            f"{self.stall.describe()}: no stream received a chunk for {self.stall.stall_s:g} s (stall_s) while "
            f"requests were in flight; the serve target {self.how}; `--resume` repeats this step"
        )

    def as_dict(self) -> dict:
        """phase.json `stall`: the stall, the kill, and the detection time (stall onset to the target's end)."""
        return {**asdict(self.stall), "how": self.how, "kill_s": round(self.kill_s, 3),
                "onset_to_kill_s": round(self.stall.quiet_s + self.kill_s, 3), "kill_failed": self.kill_failed,
                "dispatch_held_s": round(self.held_s, 3), "reason": self.reason()}  # fmt: skip


class StallWatch:
    """One step's detector: the replay feeds `activity`, the /metrics sampler `on_sample`; `watch` holds dispatch
    (`hold`) while a stall is suspected and returns the first Stall; `kill` acts on it."""

    def __init__(self, stall_s: float, scraping: bool) -> None:
        self.stall_s = stall_s
        self.suspect_s = stall_s * SUSPECT_SHARE
        self.activity = StreamActivity()
        self.hold = DispatchGate()  # closed while a stall is suspected, and for good once one is seen
        self.poll_s = poll_interval_s(stall_s)
        self.samples: deque[TokenSample] | None = deque() if scraping else None
        self._held_in_flight = 0  # requests in flight when the suspicion being held began

    def on_sample(self, sample: dict) -> None:
        """Keep an ok MetricsSampler sample (its start moved onto the monotonic clock); older ones are dropped."""
        if self.samples is None or sample.get("error") is not None:
            return
        now = time.monotonic()
        values = sample.get("values") or {}
        started = now - max(0.0, time.time() - float(sample.get("t", time.time())))
        self.samples.append(TokenSample(started, values.get("generation_tokens"), values.get("num_requests_running")))
        while self.samples and self.samples[0].t < now - self.stall_s - self.poll_s:
            self.samples.popleft()

    def _in_flight(self) -> int:
        """Requests in flight; while a suspicion holds dispatch, at least those in flight when it began (one that
        ended without a byte since was not replaced: the engine still owes it)."""
        return max(self.activity.in_flight, self._held_in_flight if self.hold.paused else 0)

    def verdict(self, window_s: float | None = None) -> Stall | None:
        """The rule applied now over `window_s` (default `stall_s`; `suspect_s` asks whether a stall is suspected)."""
        activity = self.activity
        return stall_verdict(time.monotonic(), self._in_flight(), activity.quiet_since, self.samples,
                             window_s if window_s is not None else self.stall_s)  # fmt: skip

    def look(self, events: EventLog, step: StepKey) -> Stall | None:
        """One poll: a Stall (the hold closed for good), else hold or release dispatch as the suspicion says."""
        stall = self.verdict()
        if stall is not None:
            self.hold.pause()
            return stall
        suspected = self.verdict(self.suspect_s)
        if suspected is not None and self.hold.pause():
            self._held_in_flight = suspected.in_flight
            events.emit(StallSuspected(step, suspected.quiet_s, self.suspect_s, self.stall_s, suspected.in_flight,
                                       suspected.tokens, suspected.metrics))  # fmt: skip
        elif suspected is None and self.hold.paused:
            quiet_s = time.monotonic() - self.activity.quiet_since
            why = "a stream received bytes" if quiet_s < self.suspect_s else "the generation-token counter moved"
            events.emit(StallCleared(step, round(self.hold.resume() or 0.0, 3), why))
            self._held_in_flight = 0
        return None

    async def watch(self, events: EventLog, step: StepKey) -> Stall:
        """Return the first Stall, looking every `poll_s` and holding dispatch while one is suspected."""
        while True:
            await asyncio.sleep(self.poll_s)
            stall = self.look(events, step)
            if stall is not None:
                return stall

    async def kill(
        self, stall: Stall, runtime: ServeRuntime, events: EventLog, ledger: RunLedger, step: StepKey
    ) -> StallIncident:
        """Kill the target through its runtime, emit `engine_stalled`; a target that survives ends the run."""
        began = time.monotonic()
        held_s = sum(end - start for start, end in self.hold.intervals_ns()[-1:]) / 1e9  # the suspicion in progress
        failed = None
        self.activity.stop()  # the requests in flight end with the target; none is sent to a dying one
        try:
            ended = await runtime.kill()
            exit_words = ended.describe()
            how = f"ended: {exit_words}" if ended.returncode is not None else f"was not killed: {exit_words}"
        except ServeError as exc:
            failed = f"the serve target of {step.arm}/{step.mode} could not be killed after a stall: {exc}"
            how = f"could not be killed: {exc}"
        incident = StallIncident(stall, how, time.monotonic() - began, failed, held_s)
        events.emit(
            EngineStalled(step, stall.quiet_s, stall.stall_s, stall.in_flight, stall.tokens, stall.running,
                          stall.metrics, how, round(incident.kill_s, 3), incident.reason())
        )  # fmt: skip
        if failed:
            ledger.fail_run(failed)
        return incident


def stalled_step_record(
    step: StepKey, phase: PhaseBase, started_at: float, incident: StallIncident, target: dict, samples: list[dict]
) -> dict:
    """phase.json of a step a stall ended: no stats (the step is not DONE), the `stall` section, the target, and
    the /metrics summary of the scrapes taken (server_metrics.jsonl holds them all; requests.jsonl what ended)."""
    return {
        "step": step.as_dict(),
        "phase": phase.model_dump(),
        "started_at": started_at,
        "ended_at": time.time(),
        "target": target,
        "stall": incident.as_dict(),
        "server_metrics": summarize_metrics(samples) if phase.metrics_interval_s is not None else None,
    }
