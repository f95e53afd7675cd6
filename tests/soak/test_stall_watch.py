"""The stall detector: its pure rule by hand, its default, its validation, and a session in front of a real
loopback mock server that stops sending (the target killed, the step failed at once, the next arm run).

The embedded engine's `stream_stall` and `zombie` faults and a SIGSTOPped real vLLM are in
tests/soak/test_stall_incidents.py and tests/vllm/test_vllm_stall.py.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest

from engine.config_file import ConfigFileError
from runners.plan.load import load_plan
from runners.plan.phases import ShareGptPhase
from runners.plan.steps import Session
from runners.replay.activity import StreamActivity
from runners.replay.dispatch import Arrivals, RequestShape, replay
from runners.replay.prompts import Conversation, Turn
from runners.run.events import EventLog
from runners.run.files import read_json, read_jsonl
from runners.run.provenance import start_session
from runners.run.runs import create_run, load_run_plan
from runners.serve.runtime import ExitInfo
from runners.soak.session import SoakSession
from runners.soak.stall_watch import (
    Stall,
    StallIncident,
    StallWatch,
    TokenSample,
    default_stall_s,
    poll_interval_s,
    stall_s_of,
    stall_verdict,
)
from runners.soak.step import StepObservation, judge
from runners.testbed.mock_server import MockSettings
from tests.support.fake_runtime import FakeRuntime
from tests.support.mock import StartMock
from tests.support.plans import Plan, ab_arms, engine_serve, sharegpt_phase

SESSION_DEADLINE_S = 60.0


def _samples(*points: tuple[float, float | None, float | None]) -> list[TokenSample]:
    return [TokenSample(t, tokens, running) for t, tokens, running in points]


# ---- the rule, by hand ------------------------------------------------------------------------------


def test_no_request_in_flight_is_never_a_stall_however_long_the_silence() -> None:
    assert stall_verdict(now=1000.0, in_flight=0, quiet_since=0.0, samples=None, stall_s=2.0) is None


def test_a_silence_shorter_than_stall_s_is_no_stall() -> None:
    assert stall_verdict(now=101.9, in_flight=3, quiet_since=100.0, samples=None, stall_s=2.0) is None


def test_the_quiet_time_is_the_events_figure_so_its_words_round_the_same_way() -> None:
    """2.1500004 s quiet: the event records 2.15 and the words say what 2.15 says (the raw figure said 2.2)."""
    stall = stall_verdict(now=102.1500004, in_flight=1, quiet_since=100.0, samples=None, stall_s=2.0)
    assert stall is not None and stall.quiet_s == 2.15
    assert stall.describe().startswith(f"engine stalled for {2.15:.1f} s ")


def test_silent_streams_without_metrics_are_a_stall_on_their_own() -> None:
    stall = stall_verdict(now=102.5, in_flight=2, quiet_since=100.0, samples=None, stall_s=2.0)
    assert stall == Stall(2.5, 2.0, 2, None, None, "/metrics not scraped (metrics_interval_s unset)")
    assert stall.describe() == (
        "engine stalled for 2.5 s (requests in flight 2, tokens unknown: /metrics not scraped "
        "(metrics_interval_s unset))"
    )


def test_silent_streams_and_a_frozen_token_counter_are_a_stall_with_the_counter_as_evidence() -> None:
    samples = _samples((99.0, 100.0, 2.0), (100.6, 118.0, 2.0), (101.1, 118.0, 2.0), (101.6, 118.0, 2.0))
    stall = stall_verdict(now=102.2, in_flight=2, quiet_since=100.0, samples=samples, stall_s=2.0)
    assert stall is not None
    assert (stall.tokens, stall.running) == (118.0, 2.0)  # the scrape at 99.0 is outside the window
    assert stall.describe() == "engine stalled for 2.2 s (requests in flight 2, tokens frozen at 118)"
    assert stall.metrics == "generation tokens frozen at 118 over 3 scrapes, running 2"


def test_a_token_counter_that_moved_in_the_window_means_the_engine_works_no_stall() -> None:
    samples = _samples((100.5, 118.0, 4.0), (101.0, 130.0, 4.0), (101.5, 140.0, 4.0))
    assert stall_verdict(now=102.2, in_flight=2, quiet_since=100.0, samples=samples, stall_s=2.0) is None


def test_a_counter_reset_reads_as_a_move() -> None:
    samples = _samples((100.5, 118.0, 1.0), (101.5, 0.0, 1.0))
    assert stall_verdict(now=102.2, in_flight=1, quiet_since=100.0, samples=samples, stall_s=2.0) is None


def test_a_move_that_left_the_window_no_longer_vetoes() -> None:
    """A scrape that raced the last chunk (read one token more) vetoes only while it is in the window."""
    samples = _samples((100.1, 117.0, 2.0), (100.6, 118.0, 2.0), (101.1, 118.0, 2.0), (101.6, 118.0, 2.0))
    assert stall_verdict(now=102.05, in_flight=2, quiet_since=100.0, samples=samples, stall_s=2.0) is None
    later = stall_verdict(now=102.2, in_flight=2, quiet_since=100.0, samples=samples, stall_s=2.0)
    assert later is not None and later.tokens == 118.0


@pytest.mark.parametrize(
    ("samples", "words", "running"),
    [
        ([], "no ok /metrics scrape in the last 2 s", None),  # a target whose /metrics stopped answering
        (_samples((101.0, 5.0, 1.0)), "1 scrape(s) with the token counter in the last 2 s", 1.0),
        (_samples((100.5, None, 0.0), (101.5, None, 0.0)), "0 scrape(s) with the token counter in the last 2 s", 0.0),
    ],
)  # fmt: skip
def test_fewer_than_two_counted_scrapes_leave_the_streams_to_decide(
    samples: list[TokenSample], words: str, running: float | None
) -> None:
    stall = stall_verdict(now=102.2, in_flight=1, quiet_since=100.0, samples=samples, stall_s=2.0)
    assert stall is not None and stall.tokens is None and stall.running == running and stall.metrics == words
    assert f"tokens unknown: {words}" in stall.describe()


def test_zero_running_is_evidence_not_a_veto() -> None:
    """A front end that hangs requests before the engine sees them (a zombie) shows 0 running, tokens frozen."""
    samples = _samples((100.5, 40.0, 0.0), (101.5, 40.0, 0.0))
    stall = stall_verdict(now=102.2, in_flight=2, quiet_since=100.0, samples=samples, stall_s=2.0)
    assert stall is not None and stall.running == 0.0 and stall.tokens == 40.0


# ---- stall_s: its default, its validation, the poll ---------------------------------------------------


@pytest.mark.parametrize(
    ("http_timeout_s", "expected"), [(2.0, 2.0), (45.0, 45.0), (120.0, 60.0), (300.0, 60.0), (900.0, 90.0),
                                     (1800.0, 180.0)]
)  # fmt: skip
def test_default_stall_s_is_a_minute_growing_with_the_request_deadline_and_never_past_it(
    http_timeout_s: float, expected: float
) -> None:
    assert default_stall_s(http_timeout_s) == expected


def test_a_phase_stall_s_wins_over_the_default() -> None:
    base = {"name": "p", "kind": "sharegpt", "requests": 2, "http_timeout_s": 300.0}
    assert stall_s_of(ShareGptPhase(**base)) == 60.0
    assert stall_s_of(ShareGptPhase(**base, stall_s=5.0)) == 5.0
    # above http_timeout_s is allowed: with two or more requests in flight the streams can stay silent longer than
    # one request's deadline (each timed-out request is replaced by another that hangs)
    assert stall_s_of(ShareGptPhase(**base, stall_s=400.0)) == 400.0


@pytest.mark.parametrize(
    ("value", "says"),
    [
        ("0", "greater than 0"),
        ("-2", "greater than 0"),
        ("100000", "less than or equal to 86400"),
        ('"soon"', "valid number"),
    ],
)
def test_a_plan_with_a_bad_stall_s_names_the_file_line_and_field(tmp_path: Path, value: str, says: str) -> None:
    path = tmp_path / "plan.toml"
    path.write_text(
        'name = "x"\n[serve]\nkind = "external"\nurl = "http://127.0.0.1:9"\n[[arms]]\nname = "a"\n'
        f'[[phases]]\nname = "p"\nkind = "sharegpt"\nrequests = 2\nstall_s = {value}\n'
    )
    with pytest.raises(ConfigFileError) as err:
        load_plan(path)
    assert f"{path}:11: phases[0].stall_s: Input should be" in str(err.value) and says in str(err.value)


def test_the_watch_polls_a_tenth_of_stall_s_within_bounds() -> None:
    assert [poll_interval_s(s) for s in (0.2, 2.0, 60.0)] == [0.05, 0.2, 1.0]


# ---- what feeds it ------------------------------------------------------------------------------------


def test_stream_activity_starts_the_quiet_clock_when_requests_go_in_flight_and_on_every_chunk() -> None:
    activity = StreamActivity()
    time.sleep(0.02)
    activity.started()
    first = activity.quiet_since
    time.sleep(0.02)
    activity.started()  # a second request does not restart the clock: a wedged engine keeps taking requests
    assert activity.quiet_since == first and activity.in_flight == 2
    activity.chunk()
    assert activity.quiet_since > first
    activity.ended()
    activity.ended()
    assert activity.in_flight == 0 and not activity.stopped
    activity.stop()
    assert activity.stopped


async def test_the_replay_tells_the_activity_of_every_request_and_chunk_and_stops_sending_once_it_is_stopped(
    start_mock: StartMock,
) -> None:
    url = await start_mock(MockSettings(ttft_ms=5, itl_ms=5, tokens=8))
    conversations = [Conversation(f"c{i}", (Turn("hi"),)) for i in range(4)]
    shape = RequestShape(endpoint="chat", max_tokens=8, http_timeout_s=10.0)
    activity = StreamActivity()
    before = activity.quiet_since
    outcome = await replay(url, "mock", conversations, shape, Arrivals(2), lambda _: None, asyncio.Event(),
                           activity=activity)  # fmt: skip
    assert [r.status for r in outcome.records] == ["ok"] * 4
    assert activity.in_flight == 0 and activity.quiet_since > before
    activity.stop()
    stopped = await replay(url, "mock", conversations, shape, Arrivals(2), lambda _: None, asyncio.Event(),
                           activity=activity)  # fmt: skip
    assert stopped.records == []  # a target being killed for a stall gets no new request


@pytest.mark.serial  # a 0.1 s bound on the monotonic clock
def test_the_watch_keeps_ok_scrapes_on_the_monotonic_clock_and_drops_old_ones() -> None:
    watch = StallWatch(stall_s=2.0, scraping=True)
    now = time.time()
    watch.on_sample({"t": now - 10.0, "values": {"generation_tokens": 5.0}, "error": None})
    assert watch.samples is not None and len(watch.samples) == 0  # older than any window can reach
    watch.on_sample({"t": now - 0.5, "values": {"generation_tokens": 7.0, "num_requests_running": 1.0}, "error": None})
    watch.on_sample({"t": now, "values": {}, "error": "scraping http://x/metrics failed: refused"})
    assert len(watch.samples) == 1
    kept = watch.samples[0]
    assert (kept.tokens, kept.running) == (7.0, 1.0) and abs(time.monotonic() - kept.t - 0.5) < 0.1
    assert StallWatch(stall_s=2.0, scraping=False).samples is None


# ---- the step's verdict ------------------------------------------------------------------------------


def test_judge_fails_a_stalled_step_as_a_dead_target_in_the_stall_s_words() -> None:
    words = "engine stalled for 2.2 s (requests in flight 2, tokens frozen at 118): ..."
    assert judge(StepObservation(False, target_ended="killed (signal 9)", stall=words)).failure == words
    assert judge(StepObservation(True, ok_requests=4, stall=words)).outcome == "target_died"
    memory = judge(StepObservation(False, memory="memory watchdog KILL: x", stall=words))
    assert memory.failure == "memory watchdog KILL: x"  # the guard's action comes first


def test_the_incident_reads_as_the_step_failure_and_times_onset_to_kill() -> None:
    stall = Stall(2.25, 2.0, 2, 118.0, 2.0, "generation tokens frozen at 118 over 3 scrapes, running 2")
    incident = StallIncident(stall, "ended: killed (signal 9)", 0.04)
    assert incident.reason() == (
        "engine stalled for 2.2 s (requests in flight 2, tokens frozen at 118): no stream received a chunk for 2 s "
        "(stall_s) while requests were in flight; the serve target ended: killed (signal 9); `--resume` repeats "
        "this step"
    )
    assert incident.as_dict()["onset_to_kill_s"] == 2.29 and incident.as_dict()["tokens"] == 118.0


# ---- a session in front of a real mock server that stops sending -------------------------------------


class _KillableRuntime(FakeRuntime):
    """The fake runtime whose kill ends it, as a real one's does."""

    async def kill(self) -> ExitInfo:
        self.calls.append("kill")
        self._died.set()
        return ExitInfo(-9, "killed")


def _plan(tmp_path: Path) -> Path:
    phase = sharegpt_phase(requests=6, concurrency=2, repeats=2, max_tokens=16, http_timeout_s=20, stall_s=1.5,
                           metrics_interval_s=0.5)  # fmt: skip
    return Plan("stall", engine_serve(), ab_arms(), [phase]).write(tmp_path)


async def test_a_target_whose_streams_stop_is_killed_its_step_fails_at_once_and_the_next_arm_runs(
    tmp_path: Path, start_mock: StartMock
) -> None:
    # arm a's server stops every second stream half-way and keeps it open (the probe, request 1, is spared)
    urls = {"a": await start_mock(MockSettings(ttft_ms=5, itl_ms=5, tokens=16, fault="stall", fault_every=2)),
            "b": await start_mock(MockSettings(ttft_ms=5, itl_ms=5, tokens=16))}  # fmt: skip
    run = create_run(_plan(tmp_path), tmp_path / "run", tmp_path / "runs")
    start_session(run, ["test"])
    runtimes: dict[str, FakeRuntime] = {}

    def factory(session: Session) -> FakeRuntime:
        runtime = _KillableRuntime(urls[session.arm.name], session.arm.name, {}, run)
        runtimes[session.arm.name] = runtime
        return runtime

    events_log = EventLog(run.events)
    soak = SoakSession(run, load_run_plan(run), events_log, asyncio.Event(), runtime_factory=factory)
    started = time.monotonic()
    result = await asyncio.wait_for(soak.run(), SESSION_DEADLINE_S)
    events_log.close()
    events = read_jsonl(run.events)
    assert (result.status, result.steps_done, result.steps_failed) == ("failed", 2, 2)
    assert runtimes["a"].calls == ["start", "wait_ready", "kill", "stop"]
    assert runtimes["b"].calls == ["start", "wait_ready", "stop"]
    assert time.monotonic() - started < 20  # never the request's 20 s timeout

    stalled = [e for e in events if e["type"] == "engine_stalled"]
    assert len(stalled) == 1 and stalled[0]["step"] == {"arm": "a", "mode": "primary", "phase": "replay", "rep": 0}
    e = stalled[0]
    assert e["in_flight"] == 2 and e["stall_s"] == 1.5 and 1.5 <= e["quiet_s"] <= 1.5 + 0.5 and e["tokens"] is None
    assert e["metrics"] == "no ok /metrics scrape in the last 1.5 s"  # the mock has no /metrics
    failed = {(f["step"]["arm"], f["step"]["rep"]): f["reason"] for f in events if f["type"] == "step_failed"}
    assert failed[("a", 0)].startswith("engine stalled for 1.") and "requests in flight 2" in failed[("a", 0)]
    assert "the serve target ended: killed (signal 9)" in failed[("a", 0)]
    assert failed[("a", 1)] == "not run: the serve target died in an earlier step"

    step = run.step_dir(load_run_plan(run).plan.steps()[0])
    record = read_json(step / "phase.json")
    assert record["stall"]["reason"] == failed[("a", 0)] and record["stall"]["onset_to_kill_s"] < 1.5 + 2
    assert record["server_metrics"]["scrapes_failed"] >= 1 and "stats" not in record
    # the probe was the mock's request 1: the step's 2nd (ok) finished and is kept, its 1st and 3rd hung; none
    # was sent after the stall was seen, and the two in flight ended when the step did (the fake kill ends nothing)
    requests = read_jsonl(step / "requests.jsonl")
    assert sorted(r["status"] for r in requests) == ["cancelled", "cancelled", "ok"], requests
    assert (step / "server_metrics.jsonl").is_file()
    assert not run.is_done(load_run_plan(run).plan.steps()[0])
