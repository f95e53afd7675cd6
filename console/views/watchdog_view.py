"""WatchdogView: the memory guard's state as folded from its records (pure; no I/O, no UI).

It folds, in any mix, the three things the guard writes (runners/watchdog/guard.py):
- a `watchdog.jsonl` record: `t`, `level`, the decision's numbers (`reason`, `available_gib`,
  `fill_gib_s`, `seconds_to_kill_floor`, `restart_allowed`) and, once the guard has one, `sample`
  (`Sample.as_dict()`: `t`, `mem`, `psi`, `target`, `gpu`, `available_gib`);
- the `watchdog.json` status: the same level and numbers plus `floors_gib` (`warn`, `abort`,
  `kill`), `action`, `pid` and `last_kill`. The floors are only here and in `guard_started`;
- guard events from `events.jsonl`, as `runners.run.event_types.parse_event` reads them back (`GuardStarted`,
  `WatchdogLevel`, `WatchdogAction`, `GuardEndedTarget`, `GuardStopped`, `GuardLost`: `WatchdogView.EVENT_FOLDS`);
  other events are ignored, and an events.jsonl line given as a record is skipped (read it back first).
A `gb10-console watch --json` line (a sample's fields at the top level, plus `level`) folds too.

The latest `t` wins for the current level and numbers, whatever file it came from, so two streams
tailed at different rates never move the level backwards. History points come from samples only,
one per distinct sample time (the guard may repeat a sample in two records). A record that cannot
be read is skipped and counted, never raised; a value that is missing or not a number is None
(shown as N/A), never 0.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, fields
from typing import Any, ClassVar, Literal

from engine.units import GIB
from runners.host.cgroup import CgroupMemory
from runners.host.psi import Pressure
from runners.run.event_types import (
    ABSENT,
    Event,
    GuardEndedTarget,
    GuardLost,
    GuardStarted,
    GuardStopped,
    LoggedEvent,
    ReadEvent,
    UnreadableEvent,
    WatchdogAction,
    WatchdogLevel,
)
from runners.watchdog.policy import Floors
from runners.watchdog.samplers import GpuSample

HISTORY_POINTS = 240  # 20 minutes of 5 s records, 4 minutes of 1 s samples
GUARD_LEVELS = ("ok", "warn", "abort", "kill")

IGNORED = "ignored"  # an events.jsonl event that is not the guard's: not malformed, not counted

GpuMemoryKind = Literal["unified", "discrete", "unknown", "n/a"]


@dataclass(frozen=True)
class SeriesSpec:
    """One history series: its key in `WatchdogView.series`, the label shown and the unit."""

    key: str
    label: str
    unit: str


SERIES = (
    SeriesSpec("available_gib", "MemAvailable", "GiB"),
    SeriesSpec("gpu_util_pct", "GPU util", "%"),
    SeriesSpec("gpu_temp_c", "GPU temp", "°C"),
    SeriesSpec("gpu_power_w", "GPU power", "W"),
    SeriesSpec("gpu_sm_clock_mhz", "SM clock", "MHz"),
)


@dataclass
class Series:
    """A bounded history; a point is None where the sample did not report the value."""

    spec: SeriesSpec
    points: deque[float | None]

    def last(self) -> float | None:
        """The newest point (None when it was not reported, or before the first sample)."""
        return self.points[-1] if self.points else None

    def has_data(self) -> bool:
        """Whether any point was reported; a series without one is N/A, never a row of zeros."""
        return any(p is not None for p in self.points)


@dataclass
class WatchdogView:
    """What the watchdog panel shows, derived from the guard's records only."""

    history_points: int = HISTORY_POINTS
    level: str = "unknown"  # ok / warn / abort / kill; "lost" when the guard is gone; "unknown" before a decision
    reason: str = ""
    last_t: float | None = None  # unix time of the newest record folded in
    action: str | None = None  # the status's edge-triggered action at its time (warn / abort / kill)
    available_gib: float | None = None  # MemAvailable of the newest decision (else of the newest sample)
    total_gib: float | None = None  # MemTotal of the newest sample
    floors: Floors | None = None
    fill_gib_s: float | None = None  # positive while memory is being consumed
    seconds_to_kill_floor: float | None = None
    restart_allowed: bool | None = None
    psi: Pressure | None = None  # /proc/pressure/memory of the newest sample; None where PSI is off
    target: CgroupMemory | None = None  # the serve target's memory cgroup of the newest sample
    gpu: GpuSample | None = None  # GPU 0 in the newest sample; None before one
    sample_t: float | None = None  # time of the newest sample
    last_kill: dict | None = None  # watchdog.json's last_kill (t, arm, mode, outcome, reason)
    guard_pid: int | None = None
    records: int = 0  # records folded in
    skipped: int = 0  # malformed records skipped
    last_skip: str = ""  # why the last one was skipped
    series: dict[str, Series] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for spec in SERIES:
            if spec.key not in self.series:
                self.series[spec.key] = Series(spec, deque(maxlen=max(1, self.history_points)))

    @classmethod
    def from_records(cls, records: Iterable[Any], history_points: int = HISTORY_POINTS) -> WatchdogView:
        """A view with `records` folded in, in order."""
        view = cls(history_points=history_points)
        for record in records:
            view.apply(record)
        return view

    def apply(self, record: Any) -> None:
        """Fold one record in (watchdog.jsonl line, watchdog.json status, or an event read back from events.jsonl);
        never raises."""
        try:
            why = (
                self._apply_event(record) if isinstance(record, LoggedEvent | UnreadableEvent) else self._apply(record)
            )
        except Exception as exc:  # a shape no check foresaw: the panel must outlive any record
            why = f"{type(exc).__name__}: {exc}"
        if why is None:
            self.records += 1
        elif why != IGNORED:
            self.skipped += 1
            self.last_skip = why

    # ---- folding -------------------------------------------------------------------------------

    def _apply(self, record: Any) -> str | None:
        """Fold a guard record, or say why it was skipped (nothing is changed then)."""
        if not isinstance(record, dict):
            return f"not a JSON object: {type(record).__name__}"
        t = record.get("t")
        if t is not None and _number(t) is None:
            return f"t is not a time: {t!r}"
        if "type" in record:
            return f"an events.jsonl line ({record['type']!r}) given as a guard record: read it back with parse_event"
        if not any(key in record for key in ("level", "sample", "mem", "floors_gib")):
            return "neither a guard record, a status nor a guard event"
        level = record.get("level")
        if level is not None and level not in GUARD_LEVELS:
            return f"unknown level {level!r}"
        floors = record.get("floors_gib")
        if floors is not None:
            floors = _floors(floors)
            if isinstance(floors, str):
                return floors
        sample = record.get("sample", record if "mem" in record else None)
        if sample is not None and not isinstance(sample, dict):
            return f"sample is not an object: {type(sample).__name__}"

        if floors is not None:
            self.floors = floors
        if sample is not None:
            self._fold_sample(sample)
        if self._newest(_number(t)):
            self._fold_status(record, level)
        return None

    def _newest(self, t: float | None) -> bool:
        """Whether a record at `t` is the newest yet (one without a time counts as newest); it moves `last_t`."""
        if t is not None and self.last_t is not None and t < self.last_t:
            return False
        if t is not None:
            self.last_t = t
        return True

    def _fold_status(self, record: dict, level: str | None) -> None:
        """The level, reason and numbers of the newest watchdog.jsonl record or watchdog.json status."""
        if level is not None:
            self.level = level
        if "reason" in record:
            self.reason = _text(record.get("reason"))
        if "action" in record:
            self.action = record["action"] if isinstance(record["action"], str) else None
        if "pid" in record:
            self.guard_pid = _int(record.get("pid"))
        if isinstance(record.get("last_kill"), dict):
            self.last_kill = record["last_kill"]
        for name in ("available_gib", "fill_gib_s", "seconds_to_kill_floor"):
            if name in record:
                setattr(self, name, _number(record.get(name)))
        if isinstance(record.get("restart_allowed"), bool):
            self.restart_allowed = record["restart_allowed"]

    def _apply_event(self, read: ReadEvent) -> str | None:
        """Fold a guard event read back from events.jsonl; IGNORED for another event; why, for a guard event's
        line that could not be read."""
        if isinstance(read, UnreadableEvent):
            guard_types = {cls.TYPE for cls in self.EVENT_FOLDS}
            return "; ".join(read.problems) if read.type in guard_types else IGNORED
        fold = self.EVENT_FOLDS.get(type(read.event))
        return IGNORED if fold is None else fold(self, read.event, read.t)

    def _numbers(self, available: object, fill: object, seconds: object, restart_allowed: object) -> None:
        """A decision's numbers from a guard event; an optional one it left out (ABSENT) changes nothing."""
        for name, value in (("available_gib", available), ("fill_gib_s", fill), ("seconds_to_kill_floor", seconds)):
            if value is not ABSENT:
                setattr(self, name, _number(value))
        if isinstance(restart_allowed, bool):
            self.restart_allowed = restart_allowed

    def _on_guard_started(self, e: GuardStarted, t: float) -> str | None:
        floors = _floors(e.floors_gib)
        if isinstance(floors, str):
            return floors
        self.floors = floors
        if self._newest(t):
            self.guard_pid = _int(e.pid)
            if self.level in ("lost", "unknown"):
                self.level, self.reason = "unknown", f"guard up (pid {self.guard_pid}), no decision yet"
        return None

    def _on_watchdog_level(self, e: WatchdogLevel, t: float) -> str | None:
        if e.level not in GUARD_LEVELS:
            return f"unknown level {e.level!r}"
        if self._newest(t):
            self.level, self.reason = e.level, e.reason
            self._numbers(e.available_gib, e.fill_gib_s, e.seconds_to_kill_floor, e.restart_allowed)
        return None

    def _on_watchdog_action(self, e: WatchdogAction, t: float) -> None:
        if self._newest(t):
            self.reason, self.action = e.reason, e.action
            self._numbers(e.available_gib, e.fill_gib_s, e.seconds_to_kill_floor, e.restart_allowed)

    def _on_guard_ended_target(self, e: GuardEndedTarget, t: float) -> None:
        if not self._newest(t):
            return
        if e.kill:  # kill False: a graceful stop
            target = e.target
            self.last_kill = {"t": t, "arm": target.get("arm"), "mode": target.get("mode"), "outcome": e.outcome,
                              "reason": e.cause}  # fmt: skip
        self._numbers(e.available_gib, e.fill_gib_s, e.seconds_to_kill_floor, e.restart_allowed)

    def _on_guard_stopped(self, e: GuardStopped, t: float) -> None:
        if self._newest(t):
            self.level, self.reason = "unknown", f"guard stopped: {e.reason}"

    def _on_guard_lost(self, e: GuardLost, t: float) -> None:
        if self._newest(t):
            self.level, self.reason = "lost", f"guard lost: {e.reason}"

    # the guard's events and how each folds; a handler returns why it skipped its event, or None
    EVENT_FOLDS: ClassVar[dict[type[Event], Callable[[WatchdogView, Any, float], str | None]]] = {
        GuardStarted: _on_guard_started,
        WatchdogLevel: _on_watchdog_level,
        WatchdogAction: _on_watchdog_action,
        GuardEndedTarget: _on_guard_ended_target,
        GuardStopped: _on_guard_stopped,
        GuardLost: _on_guard_lost,
    }

    def _fold_sample(self, sample: dict) -> None:
        """A full sample: the newest one sets PSI, cgroup, GPU and MemTotal, and adds one history point."""
        t = _number(sample.get("t"))
        if t is not None and self.sample_t is not None and t <= self.sample_t:
            return  # the same sample again (records repeat it), or an older one
        mem = sample.get("mem") if isinstance(sample.get("mem"), dict) else {}
        available = _number(sample.get("available_gib"))
        if available is None and _number(mem.get("available")) is not None:
            available = _number(mem.get("available")) / GIB
        total = _number(mem.get("total"))
        self.total_gib = None if total is None else total / GIB
        self.psi = _pressure(sample.get("psi"))
        self.target = _cgroup(sample.get("target"))
        self.gpu = _gpu(sample.get("gpu"))
        if self.available_gib is None:
            self.available_gib = available
        if t is not None:
            self.sample_t = t
        gpu = self.gpu if self.gpu is not None and self.gpu.available else None
        point = {
            "available_gib": available,
            "gpu_util_pct": gpu.util_pct if gpu else None,
            "gpu_temp_c": gpu.temp_c if gpu else None,
            "gpu_power_w": gpu.power_w if gpu else None,
            "gpu_sm_clock_mhz": None if gpu is None or gpu.sm_clock_mhz is None else float(gpu.sm_clock_mhz),
        }
        for key, value in point.items():
            self.series[key].points.append(value)


# ---- derived numbers (pure) ---------------------------------------------------------------------


def headroom_gib(view: WatchdogView) -> dict[str, float | None]:
    """MemAvailable above each floor, in GiB: `{"warn": available - warn_gib, "abort": …, "kill": …}`.

    Negative once MemAvailable is below that floor; None where MemAvailable or the floors are unknown.
    """
    floors, available = view.floors, view.available_gib
    if floors is None or available is None:
        return {"warn": None, "abort": None, "kill": None}
    return {
        "warn": available - floors.warn_gib,
        "abort": available - floors.abort_gib,
        "kill": available - floors.kill_gib,
    }


def gpu_memory_kind(gpu: GpuSample | None) -> GpuMemoryKind:
    """How the GPU's memory must be shown.

    - "n/a": no GPU sample, or NVML answered N/A (`gpu.reason` says why);
    - "unified": the GPU allocates from host memory (GB10: nvmlDeviceGetMemoryInfo NOT_SUPPORTED, a total
      of 0, or a total within 10 % of MemTotal; see `samplers.is_unified`): MemAvailable is the figure;
    - "discrete": the device has memory of its own (`device_mem_total`);
    - "unknown": NVML answered but could not say which.
    """
    if gpu is None or not gpu.available:
        return "n/a"
    if gpu.unified is True:
        return "unified"
    if gpu.unified is False:
        return "discrete"
    return "unknown"


def gpu_memory_reported(gpu: GpuSample | None) -> bool:
    """Whether NVML reported a device memory total at all (False on GB10: NOT_SUPPORTED, or a total of 0)."""
    return gpu is not None and gpu.available and bool(gpu.device_mem_total)


def gpu_process_gib(gpu: GpuSample | None) -> float | None:
    """GPU memory attributed to processes (the sum of their usedGpuMemory) in GiB; None where NVML did not say."""
    if gpu is None or not gpu.available or gpu.process_mem_bytes is None:
        return None
    return gpu.process_mem_bytes / GIB


def gpu_na_reason(gpu: GpuSample | None) -> str | None:
    """Why the GPU is N/A (the record's reason), or None while it is reported."""
    if gpu is None:
        return "no GPU sample yet"
    if not gpu.available:
        return gpu.reason or "no reason given"
    return None


def record_age_s(view: WatchdogView, now: float) -> float | None:
    """Seconds since the newest record (`now` - `last_t`); None before the first."""
    return None if view.last_t is None else now - view.last_t


# ---- reading record fields (tolerant) -----------------------------------------------------------


def _number(value: Any) -> float | None:
    """A finite int or float (not a bool) as float; anything else None."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    value = float(value)
    return value if math.isfinite(value) else None


def _int(value: Any) -> int | None:
    number = _number(value)
    return None if number is None else int(number)


def _text(value: Any) -> str:
    return "" if value is None else str(value)


def _floors(value: Any) -> Floors | str:
    """`floors_gib` as Floors, or why it cannot be."""
    if not isinstance(value, dict):
        return f"floors_gib is not an object: {value!r}"
    warn, abort, kill = (_number(value.get(k)) for k in ("warn", "abort", "kill"))
    if warn is None or abort is None or kill is None:
        return f"floors_gib lacks a number: {value!r}"
    try:
        return Floors(warn, abort, kill)
    except ValueError as exc:
        return str(exc)


def _pressure(value: Any) -> Pressure | None:
    if not isinstance(value, dict):
        return None
    out: dict[str, Any] = {}
    for f in fields(Pressure):
        number = _number(value.get(f.name))
        out[f.name] = None if number is None else (int(number) if f.name.endswith("_total") else number)
    return Pressure(**out)


def _cgroup(value: Any) -> CgroupMemory | None:
    if not isinstance(value, dict):
        return None
    return CgroupMemory(
        version=_int(value.get("version")) or 0,
        usage_bytes=_int(value.get("usage_bytes")),
        limit_bytes=_int(value.get("limit_bytes")),
        oom_kills=_int(value.get("oom_kills")),
        pressure=_pressure(value.get("pressure")),
    )


def _gpu(value: Any) -> GpuSample | None:
    if not isinstance(value, dict):
        return None
    if value.get("available") is not True:
        return GpuSample.unavailable(_text(value.get("reason")) or "no reason given")
    unified = value.get("unified")
    return GpuSample(
        available=True,
        name=value.get("name") if isinstance(value.get("name"), str) else None,
        unified=unified if isinstance(unified, bool) else None,
        util_pct=_number(value.get("util_pct")),
        temp_c=_number(value.get("temp_c")),
        power_w=_number(value.get("power_w")),
        sm_clock_mhz=_int(value.get("sm_clock_mhz")),
        mem_clock_mhz=_int(value.get("mem_clock_mhz")),
        process_mem_bytes=_int(value.get("process_mem_bytes")),
        device_mem_total=_int(value.get("device_mem_total")),
    )
