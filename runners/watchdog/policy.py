"""The watchdog's decision rules: memory floors, hysteresis, fill prediction, PSI, edge-triggered actions.

Pure: no I/O and no clock reads. Each observation carries its own time `t` (seconds, any monotonic
origin), so every rule is tested with plain numbers. The guard process does the sampling and carries
out the actions this module returns; the policy assumes every action it returns is carried out and
records its time itself.

Levels, lowest to highest: OK, WARN, ABORT, KILL. MemAvailable below a level's floor raises the level
at once; the level only comes down once MemAvailable is back at or above that level's floor plus
`hysteresis_gib`. At ABORT, a sustained fill (MemAvailable falling at each of the last two polls)
that would reach the KILL floor within `predict_horizon_s` raises the level to KILL, and PSI
"full avg10" at or above `psi_full_avg10_abort` raises WARN to ABORT. Prediction never fires from
OK or WARN, and never on a single drop: a server that loads fast and settles inside the WARN band,
or one large allocation, is not killed for it.
An unknown MemAvailable is never read as 0 or as plenty: the level is held and the next poll comes soon.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass
from enum import IntEnum
from typing import Literal

from engine.units import GIB

Action = Literal["warn", "abort", "kill"]


class Level(IntEnum):
    """How close the host is to running out of unified memory; `name` ("KILL") and `label` ("kill") for JSON."""

    OK = 0
    WARN = 1
    ABORT = 2
    KILL = 3

    @property
    def label(self) -> str:
        """The lower-case name: "ok", "warn", "abort", "kill"."""
        return self.name.lower()


_ACTIONS: dict[Level, Action] = {Level.WARN: "warn", Level.ABORT: "abort", Level.KILL: "kill"}


@dataclass(frozen=True)
class Floors:
    """MemAvailable floors in GiB: below `warn_gib` is WARN, below `abort_gib` ABORT, below `kill_gib` KILL."""

    warn_gib: float
    abort_gib: float
    kill_gib: float

    def __post_init__(self) -> None:
        if not self.warn_gib > self.abort_gib > self.kill_gib > 0:
            raise ValueError(
                "memory floors must satisfy warn_gib > abort_gib > kill_gib > 0, got "
                f"warn_gib={self.warn_gib}, abort_gib={self.abort_gib}, kill_gib={self.kill_gib}"
            )

    def floor_gib(self, level: Level) -> float:
        """The floor below which `level` starts (WARN, ABORT or KILL; OK has none)."""
        if level == Level.WARN:
            return self.warn_gib
        if level == Level.ABORT:
            return self.abort_gib
        if level == Level.KILL:
            return self.kill_gib
        raise ValueError("Level.OK has no floor")

    def level_of(self, available_gib: float) -> Level:
        """The level MemAvailable alone gives, without hysteresis or escalation."""
        if available_gib < self.kill_gib:
            return Level.KILL
        if available_gib < self.abort_gib:
            return Level.ABORT
        if available_gib < self.warn_gib:
            return Level.WARN
        return Level.OK


FULL_SIZE_FLOORS = Floors(warn_gib=16.0, abort_gib=10.0, kill_gib=6.0)
MIN_FLOORS = Floors(warn_gib=1.5, abort_gib=1.0, kill_gib=0.5)
FULL_SIZE_TOTAL_GIB = 112.0  # a GB10's MemTotal reads about 119-128 GiB
REFERENCE_TOTAL_GIB = 128.0


def default_floors(mem_total_bytes: int | None) -> Floors:
    """The floors for a host whose MemTotal is `mem_total_bytes`.

    - MemTotal ≥ 112 GiB (a 128 GB GB10 reports about 119-128 GiB): 16 / 10 / 6 GiB.
    - smaller: each full-size floor × MemTotal / 128 GiB, but at least 1.5 / 1.0 / 0.5 GiB and at most
      the full-size floor. 24 GiB → 3.0 / 1.875 / 1.125 GiB; 4 GiB → 1.5 / 1.0 / 0.5 GiB.
    - unknown (None, or 0 as some interfaces report it): the full-size floors.

    Each floor is max(scaled, minimum) of two strictly ordered triples, so the result always validates.
    """
    if mem_total_bytes is None or mem_total_bytes <= 0:
        return FULL_SIZE_FLOORS
    total_gib = mem_total_bytes / GIB
    if total_gib >= FULL_SIZE_TOTAL_GIB:
        return FULL_SIZE_FLOORS
    scale = total_gib / REFERENCE_TOTAL_GIB

    def scaled(full: float, minimum: float) -> float:
        return min(full, max(minimum, full * scale))

    return Floors(
        warn_gib=scaled(FULL_SIZE_FLOORS.warn_gib, MIN_FLOORS.warn_gib),
        abort_gib=scaled(FULL_SIZE_FLOORS.abort_gib, MIN_FLOORS.abort_gib),
        kill_gib=scaled(FULL_SIZE_FLOORS.kill_gib, MIN_FLOORS.kill_gib),
    )


@dataclass(frozen=True)
class PolicyConfig:
    """The policy's knobs; see `Policy` for how each is used."""

    floors: Floors
    predict_horizon_s: float = 5.0
    psi_full_avg10_abort: float = 20.0  # percent
    hysteresis_gib: float = 1.0
    min_poll_s: float = 0.1
    max_poll_s: float = 1.0
    assumed_fill_gib_s: float = 6.0
    post_action_delay_s: float = 15.0
    rate_window_s: float = 2.0

    def __post_init__(self) -> None:
        problems = []
        if not self.predict_horizon_s >= 0:
            problems.append(f"predict_horizon_s={self.predict_horizon_s} must be >= 0")
        if not self.psi_full_avg10_abort >= 0:
            problems.append(f"psi_full_avg10_abort={self.psi_full_avg10_abort} must be >= 0 (percent)")
        if not self.hysteresis_gib >= 0:
            problems.append(f"hysteresis_gib={self.hysteresis_gib} must be >= 0")
        if not 0 < self.min_poll_s <= self.max_poll_s:
            problems.append(
                f"poll bounds must satisfy 0 < min_poll_s <= max_poll_s, got {self.min_poll_s}, {self.max_poll_s}"
            )
        if not self.assumed_fill_gib_s > 0:
            problems.append(f"assumed_fill_gib_s={self.assumed_fill_gib_s} must be > 0")
        if not self.post_action_delay_s >= 0:
            problems.append(f"post_action_delay_s={self.post_action_delay_s} must be >= 0")
        if not self.rate_window_s > 0:
            problems.append(f"rate_window_s={self.rate_window_s} must be > 0")
        if problems:
            raise ValueError("invalid watchdog policy: " + "; ".join(problems))


@dataclass(frozen=True)
class Decision:
    """What one observation means.

    `level` is after hysteresis and escalation; `action` is what to do now (edge-triggered, None most of
    the time); `fill_gib_s` is positive while memory is being consumed; `restart_allowed` False means the
    runner must not start a serve target.
    """

    level: Level
    action: Action | None
    reason: str
    available_gib: float | None
    fill_gib_s: float | None
    seconds_to_kill_floor: float | None
    next_poll_s: float
    restart_allowed: bool


def fill_rate(samples: Sequence[tuple[float, int]]) -> float | None:
    """Bytes per second being consumed, from `(t, MemAvailable bytes)` samples; positive = filling.

    The negated least-squares slope: -Σ(t-t̄)(a-ā) / Σ(t-t̄)². None with fewer than 2 samples or when
    all samples share one time.
    """
    if len(samples) < 2:
        return None
    n = len(samples)
    t_mean = sum(t for t, _ in samples) / n
    a_mean = sum(a for _, a in samples) / n
    var = sum((t - t_mean) ** 2 for t, _ in samples)
    if var == 0:
        return None
    cov = sum((t - t_mean) * (a - a_mean) for t, a in samples)
    return -cov / var


class Policy:
    """The watchdog's state machine; feed it one observation per poll.

    Per observation, with MemAvailable known:
    1. the level from the floors; up at once, down one level at a time while MemAvailable ≥ that level's
       floor + hysteresis;
    2. at WARN, PSI full avg10 ≥ the threshold → ABORT;
    3. at ABORT, a sustained positive fill (slope over the last `rate_window_s`, MemAvailable falling at each
       of the last two polls) that reaches the KILL floor within `predict_horizon_s` → KILL;
    4. the action: `warn` when the level rises to WARN; `abort`/`kill` at ABORT/KILL unless one was sent
       within `post_action_delay_s` (an abort is held by an earlier abort or kill, a kill only by an earlier
       kill), so a level that stays fires again once the delay has passed;
    5. restart is refused from the first abort/kill until MemAvailable ≥ WARN floor + hysteresis;
    6. the next poll: (MemAvailable - KILL floor) / max(assumed fill, measured fill), clamped to
       [min_poll_s, max_poll_s], so at most one poll's worth of fill passes unseen.
    """

    def __init__(self, config: PolicyConfig):
        self.config = config
        self._level = Level.OK
        self._samples: deque[tuple[float, int]] = deque()
        self._last_abort_t: float | None = None
        self._last_kill_t: float | None = None
        self._restart_blocked = False

    @property
    def level(self) -> Level:
        """The level of the last decision (OK before the first)."""
        return self._level

    def observe(self, t: float, available_bytes: int | None, psi_full_avg10: float | None = None) -> Decision:
        """Decide on MemAvailable `available_bytes` (None: unknown) and PSI full avg10 (percent) at time `t`."""
        cfg = self.config
        if available_bytes is None:
            return Decision(
                level=self._level,
                action=None,
                reason=f"MemAvailable unknown: holding {self._level.name}",
                available_gib=None,
                fill_gib_s=None,
                seconds_to_kill_floor=None,
                next_poll_s=cfg.min_poll_s,
                restart_allowed=False,
            )
        self._remember(t, available_bytes)
        available = available_bytes / GIB
        rate = fill_rate(self._samples)
        fill = None if rate is None else rate / GIB
        seconds = _seconds_to_floor(available, cfg.floors.kill_gib, fill)
        level, reason = self._level_for(available, fill, seconds, psi_full_avg10)
        action, held = self._action_for(t, level)
        if held:
            reason = f"{reason}; {held}"
        self._level = level
        if available >= cfg.floors.warn_gib + cfg.hysteresis_gib:
            self._restart_blocked = False
        if action == "abort":
            self._last_abort_t = t
            self._restart_blocked = True
        elif action == "kill":
            self._last_kill_t = t
            self._restart_blocked = True
        return Decision(
            level=level,
            action=action,
            reason=reason,
            available_gib=available,
            fill_gib_s=fill,
            seconds_to_kill_floor=seconds,
            next_poll_s=self._next_poll(available, fill),
            restart_allowed=not self._restart_blocked,
        )

    def _remember(self, t: float, available_bytes: int) -> None:
        if self._samples and t < self._samples[-1][0]:
            self._samples.clear()  # the clock went backwards: a slope across the jump means nothing
        self._samples.append((t, available_bytes))
        while self._samples[0][0] < t - self.config.rate_window_s:
            self._samples.popleft()

    def _falling(self) -> bool:
        """MemAvailable fell at each of the last two polls (a fill, not one allocation)."""
        if len(self._samples) < 3:
            return False
        (_, a), (_, b), (_, c) = list(self._samples)[-3:]
        return a > b > c

    def _level_for(
        self, available: float, fill: float | None, seconds: float | None, psi: float | None
    ) -> tuple[Level, str]:
        cfg, floors = self.config, self.config.floors
        raw = floors.level_of(available)
        level = max(raw, self._level)
        while level > raw and available >= floors.floor_gib(level) + cfg.hysteresis_gib:
            level = Level(level - 1)
        if level > raw:
            floor = floors.floor_gib(level)
            reason = (
                f"holding {level.name}: MemAvailable {available:.1f} GiB < {floor + cfg.hysteresis_gib:.1f} GiB "
                f"({level.name} floor {floor:.1f} GiB + hysteresis {cfg.hysteresis_gib:g} GiB)"
            )
        elif level == Level.OK:
            reason = f"MemAvailable {available:.1f} GiB >= WARN floor {floors.warn_gib:.1f} GiB"
        else:
            reason = f"MemAvailable {available:.1f} GiB < {level.name} floor {floors.floor_gib(level):.1f} GiB"
        if level == Level.WARN and psi is not None and psi >= cfg.psi_full_avg10_abort:
            level = Level.ABORT
            reason = (
                f"PSI confirmed: full avg10 {psi:.1f}% >= {cfg.psi_full_avg10_abort:g}% at WARN "
                f"(MemAvailable {available:.1f} GiB)"
            )
        filling = fill is not None and fill > 0 and self._falling()
        if level == Level.ABORT and filling and seconds is not None and seconds < cfg.predict_horizon_s:
            level = Level.KILL
            reason = (
                f"filling at {fill:.1f} GiB/s: KILL floor predicted in {seconds:.1f} s "
                f"(horizon {cfg.predict_horizon_s:g} s, MemAvailable {available:.1f} GiB)"
            )
        return level, reason

    def _action_for(self, t: float, level: Level) -> tuple[Action | None, str | None]:
        """The action for `level` at `t`, or None and (for a held abort/kill) why it is held."""
        if level == Level.OK:
            return None, None
        if level == Level.WARN:
            return ("warn" if self._level < Level.WARN else None), None
        times = [self._last_kill_t] if level == Level.KILL else [self._last_abort_t, self._last_kill_t]
        recent = [t - sent for sent in times if sent is not None and t - sent < self.config.post_action_delay_s]
        if recent:
            return None, (
                f"{_ACTIONS[level]} held: last abort/kill {min(recent):.1f} s ago "
                f"(post-action delay {self.config.post_action_delay_s:g} s)"
            )
        return _ACTIONS[level], None

    def _next_poll(self, available: float, fill: float | None) -> float:
        cfg = self.config
        headroom = available - cfg.floors.kill_gib
        if headroom <= 0:
            return cfg.min_poll_s
        rate = max(cfg.assumed_fill_gib_s, fill or 0.0)
        return min(cfg.max_poll_s, max(cfg.min_poll_s, headroom / rate))


def _seconds_to_floor(available: float, floor: float, fill: float | None) -> float | None:
    """Seconds until MemAvailable reaches `floor` at `fill` GiB/s: 0 when at or below it, None when not filling."""
    if available <= floor:
        return 0.0
    if fill is None or fill <= 0:
        return None
    return (available - floor) / fill
