"""The watchdog policy: floors, levels, hysteresis, prediction, PSI, edge-triggered actions, polling; pure."""

from __future__ import annotations

import pytest

from engine.units import GIB
from runners.watchdog.policy import (
    Decision,
    Floors,
    Level,
    Policy,
    PolicyConfig,
    default_floors,
    fill_rate,
)

FLOORS = Floors(warn_gib=16.0, abort_gib=10.0, kill_gib=6.0)


def gib(x: float) -> int:
    """`x` GiB in bytes."""
    return int(x * GIB)


def make_policy(floors: Floors = FLOORS, **config: float) -> Policy:
    """A policy over `floors` with default knobs except `config`."""
    return Policy(PolicyConfig(floors=floors, **config))


def feed(policy: Policy, samples: list[tuple[float, float]]) -> list[Decision]:
    """Observe `(t, MemAvailable GiB)` samples in order."""
    return [policy.observe(t, gib(available)) for t, available in samples]


def floors_of(floors: Floors) -> tuple[float, float, float]:
    """The three floors as a tuple."""
    return (floors.warn_gib, floors.abort_gib, floors.kill_gib)


@pytest.mark.parametrize("total_gib", [128, 119])
def test_default_floors_are_full_size_on_a_gb10(total_gib: int) -> None:
    """A GB10's MemTotal (119-128 GiB) gets 16 / 10 / 6 GiB."""
    assert floors_of(default_floors(total_gib * GIB)) == (16.0, 10.0, 6.0)


def test_default_floors_scale_with_a_smaller_host() -> None:
    """24 GiB scales the full-size floors by 24/128."""
    assert floors_of(default_floors(24 * GIB)) == pytest.approx((3.0, 1.875, 1.125))


def test_default_floors_never_go_below_the_minimums() -> None:
    """4 GiB would scale to 0.5 / 0.31 / 0.19 GiB; the minimums 1.5 / 1.0 / 0.5 GiB apply instead."""
    assert floors_of(default_floors(4 * GIB)) == (1.5, 1.0, 0.5)


@pytest.mark.parametrize("total", [None, 0])
def test_default_floors_for_an_unknown_total_are_full_size(total: int | None) -> None:
    """An unknown MemTotal (None, or 0 as some interfaces report it) gets the full-size floors."""
    assert floors_of(default_floors(total)) == (16.0, 10.0, 6.0)


@pytest.mark.parametrize(
    "warn, abort, kill",
    [(10.0, 16.0, 6.0), (16.0, 6.0, 10.0), (16.0, 10.0, 10.0), (16.0, 10.0, 0.0), (16.0, 10.0, -1.0)],
)
def test_floors_must_be_ordered_and_positive(warn: float, abort: float, kill: float) -> None:
    """Floors not satisfying warn > abort > kill > 0 are refused with the floors named."""
    with pytest.raises(ValueError, match=r"warn_gib > abort_gib > kill_gib > 0.*warn_gib="):
        Floors(warn, abort, kill)


def test_policy_config_refuses_inverted_poll_bounds() -> None:
    """min_poll_s above max_poll_s is refused."""
    with pytest.raises(ValueError, match="min_poll_s"):
        PolicyConfig(floors=FLOORS, min_poll_s=2.0, max_poll_s=1.0)


def test_level_names_and_labels() -> None:
    """Levels order OK < WARN < ABORT < KILL and have upper-case names and lower-case labels."""
    assert [level.name for level in Level] == ["OK", "WARN", "ABORT", "KILL"]
    assert [level.label for level in Level] == ["ok", "warn", "abort", "kill"]
    assert Level.OK < Level.WARN < Level.ABORT < Level.KILL


def test_each_level_fires_its_action_once() -> None:
    """Each level's action fires when the level is reached and not again on the next sample."""
    samples = [(0, 20.0), (10, 15.0), (20, 14.9), (30, 9.5), (40, 9.4), (50, 5.5), (60, 5.4)]
    decisions = feed(make_policy(), samples)
    assert [d.level for d in decisions] == [Level.OK, Level.WARN, Level.WARN, Level.ABORT, Level.ABORT] + [
        Level.KILL
    ] * 2
    assert [d.action for d in decisions] == [None, "warn", None, "abort", None, "kill", None]
    assert decisions[5].reason == "MemAvailable 5.5 GiB < KILL floor 6.0 GiB"


@pytest.mark.parametrize(
    "floor, level, action", [(16.0, Level.WARN, "warn"), (10.0, Level.ABORT, "abort"), (6.0, Level.KILL, "kill")]
)
def test_hysteresis_keeps_a_level_while_memory_oscillates_around_its_floor(
    floor: float, level: Level, action: str
) -> None:
    """MemAvailable ±0.5 GiB around a floor holds the level and acts once; floor + hysteresis leaves it."""
    policy = make_policy()
    decisions = feed(policy, [(t, floor - 0.5 if t % 2 == 0 else floor + 0.5) for t in range(10)])
    assert [d.level for d in decisions] == [level] * 10
    assert [d.action for d in decisions].count(action) == 1
    assert [d.action for d in decisions if d.action != action] == [None] * 9
    assert "holding" in decisions[1].reason
    assert policy.observe(10, gib(floor + 1.0)).level < level


def test_the_level_comes_down_one_floor_at_a_time() -> None:
    """From KILL, MemAvailable just above the WARN floor (but under WARN + hysteresis) gives WARN, not OK."""
    policy = make_policy()
    assert policy.observe(0, gib(5.5)).level == Level.KILL
    assert policy.observe(10, gib(16.5)).level == Level.WARN
    assert policy.observe(20, gib(17.0)).level == Level.OK


def test_prediction_kills_at_abort_before_the_floor() -> None:
    """Filling at 2 GiB/s into ABORT (floors 16/10/6), the kill comes at once, well above the KILL floor."""
    decisions = feed(make_policy(), [(t / 2, 12.0 - t) for t in range(6)])
    kills = [d for d in decisions if d.action == "kill"]
    assert len(kills) == 1
    kill = kills[0]
    assert kill.level == Level.KILL and kill.available_gib == pytest.approx(9.0)  # the first poll in ABORT
    assert kill.fill_gib_s == pytest.approx(2.0)
    assert kill.seconds_to_kill_floor is not None and kill.seconds_to_kill_floor < 5.0
    assert "predicted" in kill.reason and "2.0 GiB/s" in kill.reason


def test_prediction_never_fires_from_ok_or_warn() -> None:
    """The same fill far above the floors stays OK; a fast load that settles inside WARN is not killed."""
    decisions = feed(make_policy(predict_horizon_s=60.0), [(t / 2, 40.0 - t) for t in range(24)])
    assert {d.level for d in decisions} == {Level.OK}
    assert {d.action for d in decisions} == {None}
    assert decisions[-1].seconds_to_kill_floor is not None and decisions[-1].seconds_to_kill_floor < 60.0
    loading = feed(make_policy(), [(t / 2, 20.0 - 1.5 * t) for t in range(5)] + [(2.5 + t, 13.0) for t in range(5)])
    assert max(d.level for d in loading) == Level.WARN and {d.action for d in loading} <= {None, "warn"}


def test_one_large_allocation_is_not_a_fill() -> None:
    """A single 3 GiB drop into ABORT aborts, but does not predict a kill: two falling polls are needed."""
    decisions = feed(make_policy(), [(0.0, 17.0), (0.5, 17.0), (1.0, 9.0), (1.5, 9.0), (2.0, 9.0)])
    assert [d.action for d in decisions] == [None, None, "abort", None, None]
    assert max(d.level for d in decisions) == Level.ABORT


def test_a_fill_that_stops_ends_the_prediction() -> None:
    """Once the fill stops for longer than the rate window, the level falls back from KILL to ABORT."""
    samples = [(0.0, 11.0), (0.5, 10.0), (1.0, 9.0)] + [(1.0 + t / 2, 9.0) for t in range(1, 9)]
    decisions = feed(make_policy(), samples)
    assert decisions[2].level == Level.KILL
    last = decisions[-1]
    assert (last.level, last.action, last.fill_gib_s, last.seconds_to_kill_floor) == (Level.ABORT, None, 0.0, None)


def test_psi_confirms_trouble_at_warn() -> None:
    """At WARN, PSI full avg10 at or above the threshold raises the level to ABORT and aborts."""
    decision = make_policy().observe(0, gib(15.0), psi_full_avg10=31.0)
    assert (decision.level, decision.action) == (Level.ABORT, "abort")
    assert decision.reason.startswith("PSI confirmed: full avg10 31.0% >= 20% at WARN")
    calm = make_policy().observe(0, gib(15.0), psi_full_avg10=5.0)
    assert (calm.level, calm.action) == (Level.WARN, "warn")


def test_psi_high_while_ok_stays_ok() -> None:
    """PSI alone, with MemAvailable above the WARN floor, changes nothing."""
    decision = make_policy().observe(0, gib(30.0), psi_full_avg10=90.0)
    assert (decision.level, decision.action) == (Level.OK, None)


def test_abort_repeats_only_after_the_post_action_delay() -> None:
    """Still below the ABORT floor 10 s after an abort: nothing; 16 s after: abort again."""
    decisions = feed(make_policy(), [(0, 9.5), (10, 9.5), (16, 9.5)])
    assert [d.action for d in decisions] == ["abort", None, "abort"]
    assert [d.level for d in decisions] == [Level.ABORT] * 3
    assert "abort held" in decisions[1].reason


def test_kill_right_after_an_abort_is_not_suppressed() -> None:
    """An abort that did not free memory is followed by a kill as soon as the KILL floor is crossed."""
    decisions = feed(make_policy(), [(0, 9.5), (1, 5.5)])
    assert [d.action for d in decisions] == ["abort", "kill"]


def test_kill_is_not_repeated_within_the_post_action_delay() -> None:
    """Still at KILL 5 s after a kill: nothing (the target is dying); 16 s after: kill again."""
    decisions = feed(make_policy(), [(0, 5.5), (5, 5.5), (16, 5.5)])
    assert [d.action for d in decisions] == ["kill", None, "kill"]


def test_abort_after_a_kill_waits_for_the_post_action_delay() -> None:
    """Dropping back to ABORT 3 s after a kill sends no abort; still at ABORT 16 s after, it does."""
    decisions = feed(make_policy(), [(0, 5.5), (3, 8.0), (16, 8.0)])
    assert [d.level for d in decisions] == [Level.KILL, Level.ABORT, Level.ABORT]
    assert [d.action for d in decisions] == ["kill", None, "abort"]


def test_restart_is_refused_from_an_abort_until_above_warn_plus_hysteresis() -> None:
    """restart_allowed goes False on the abort and True only at WARN floor + hysteresis."""
    decisions = feed(make_policy(), [(0, 20.0), (10, 15.0), (20, 9.5), (30, 16.5), (40, 17.0)])
    assert [d.restart_allowed for d in decisions] == [True, True, False, False, True]


def test_next_poll_shrinks_near_the_kill_floor() -> None:
    """The poll is max_poll with lots of headroom, (available - kill) / 6 GiB/s nearer, min_poll at the floor."""
    policy = make_policy()
    polls = [policy.observe(10 * i, gib(a)).next_poll_s for i, a in enumerate([100.0, 12.0, 9.0, 6.9, 6.3, 5.0])]
    assert polls == pytest.approx([1.0, 1.0, 0.5, 0.15, 0.1, 0.1])
    assert polls == sorted(polls, reverse=True)


def test_next_poll_follows_a_fill_faster_than_assumed() -> None:
    """A measured fill above assumed_fill_gib_s shortens the poll to (available - kill) / measured fill."""
    policy = make_policy(min_poll_s=0.01)
    feed(policy, [(0.0, 13.0)])
    decision = policy.observe(0.5, gib(7.0))
    assert decision.fill_gib_s == pytest.approx(12.0)
    assert decision.next_poll_s == pytest.approx(1.0 / 12.0, rel=1e-6)


def test_unknown_mem_available_holds_the_level_and_polls_fast() -> None:
    """None is neither 0 nor plenty: the level is held, nothing is done, the next poll is min_poll."""
    policy = make_policy()
    assert policy.observe(0, None).level == Level.OK
    policy.observe(1, gib(15.0))
    decision = policy.observe(2, None)
    assert (decision.level, decision.action, decision.available_gib) == (Level.WARN, None, None)
    assert "MemAvailable unknown" in decision.reason
    assert decision.next_poll_s == 0.1
    assert decision.restart_allowed is False


def test_fill_rate_is_the_negated_least_squares_slope() -> None:
    """Samples 10, 8, 7 GiB at t = 0, 1, 2 s: slope -1.5 GiB/s, so 1.5 GiB/s consumed."""
    rate = fill_rate([(0.0, 10 * GIB), (1.0, 8 * GIB), (2.0, 7 * GIB)])
    assert rate is not None and rate / GIB == pytest.approx(1.5)
    freeing = fill_rate([(0.0, 7 * GIB), (1.0, 8 * GIB)])
    assert freeing is not None and freeing / GIB == pytest.approx(-1.0)


def test_fill_rate_needs_two_samples_over_some_time() -> None:
    """One sample, or samples all at one time, give no rate."""
    assert fill_rate([]) is None
    assert fill_rate([(1.0, GIB)]) is None
    assert fill_rate([(1.0, GIB), (1.0, 2 * GIB)]) is None


def test_a_clock_that_goes_backwards_does_not_make_a_fill() -> None:
    """Samples before a backwards clock jump are dropped from the rate window."""
    decisions = feed(make_policy(), [(10.0, 20.0), (11.0, 20.0), (5.0, 15.0)])
    assert decisions[1].fill_gib_s == 0.0
    assert decisions[2].fill_gib_s is None


@pytest.mark.parametrize("horizon_s", [5.0, 0.0])
@pytest.mark.parametrize("fill_gib_s", [0.5, 1.0, 2.0])
def test_simulated_fill_is_killed_within_one_poll_of_the_kill_floor(fill_gib_s: float, horizon_s: float) -> None:
    """Sampled at the policy's own next_poll_s, a steady fill is killed before it passes the KILL floor by
    more than one poll's worth of fill (with prediction off: one min_poll's worth)."""
    config = PolicyConfig(floors=Floors(12.0, 9.0, 6.0), predict_horizon_s=horizon_s)
    policy = Policy(config)
    t = interval = 0.0
    for _ in range(10_000):
        available = 20.0 - fill_gib_s * t
        decision = policy.observe(t, gib(available))
        if decision.action == "kill":
            break
        interval = decision.next_poll_s
        t += interval
    else:
        pytest.fail("the fill was never killed")
    kill_gib = config.floors.kill_gib
    assert available >= kill_gib - fill_gib_s * interval
    assert available >= kill_gib - fill_gib_s * config.min_poll_s
    if horizon_s > 0:
        assert available >= kill_gib
