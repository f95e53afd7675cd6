"""WatchdogView folded from guard-shaped records (built with the guard's own code), and WatchdogPanel rendering it.

Records are made the way runners/watchdog/guard.py makes them (`_numbers`, `_floors`, `Sample.as_dict()`,
a Policy's decisions, NvmlSampler over a fake NVML), and once by the real guard loop over a fake /proc.
"""

from __future__ import annotations

import asyncio
import math
from types import SimpleNamespace

import pytest
from textual.app import App, ComposeResult

from console.panels.watchdog_panel import WatchdogPanel, panel_height, render_view, spark_text
from console.views.watchdog_view import (
    WatchdogView,
    gpu_memory_kind,
    gpu_memory_reported,
    gpu_na_reason,
    gpu_process_gib,
    headroom_gib,
    record_age_s,
)
from engine.units import GIB
from runners.host.cgroup import CgroupMemory
from runners.host.meminfo import MemInfo
from runners.host.psi import Pressure
from runners.run.event_types import parse_event
from runners.run.files import read_json, read_jsonl
from runners.watchdog.guard import _floors, _numbers
from runners.watchdog.policy import Floors, Policy, PolicyConfig
from runners.watchdog.samplers import GpuSample, NvmlSampler, Sample
from tests.support.fake_host import HOST_128G, PSI, make_guard, set_available
from tests.support.fake_nvml import FakeNvml, NVMLError_NotSupported
from tests.support.waits import until

FLOORS = Floors(warn_gib=16.0, abort_gib=10.0, kill_gib=6.0)
T0 = 1_700_000_000.0


def gb10_gpu() -> GpuSample:
    """GPU 0 as NvmlSampler reads a GB10: nvmlDeviceGetMemoryInfo NOT_SUPPORTED, two processes using 3 GiB."""
    fake = FakeNvml(
        processes=[SimpleNamespace(pid=1, usedGpuMemory=GIB), SimpleNamespace(pid=2, usedGpuMemory=2 * GIB)]
    )
    fake.fail["nvmlDeviceGetMemoryInfo"] = NVMLError_NotSupported("Not Supported")
    return NvmlSampler(nvml=fake).sample(HOST_128G)


def sample(t: float, available_gib: float, gpu: GpuSample | None, psi: Pressure | None = None) -> Sample:
    mem = MemInfo(total=HOST_128G, available=int(available_gib * GIB))
    target = CgroupMemory(2, usage_bytes=40 * GIB, limit_bytes=None, oom_kills=0, pressure=None)
    return Sample(t=t, mem=mem, psi=psi, target=target, gpu=gpu)


def guard_records(availables: list[float], gpu: GpuSample | None, t0: float = T0) -> list[dict]:
    """watchdog.jsonl lines as Guard._write makes them, one per second, from a Policy with FLOORS."""
    policy = Policy(PolicyConfig(floors=FLOORS))
    out = []
    for i, gib in enumerate(availables):
        decision = policy.observe(float(i), int(gib * GIB), None)
        full = sample(t0 + i - 0.5, gib, gpu, Pressure(some_avg10=1.5, full_avg10=0.5, some_avg60=0.75))
        out.append({"t": t0 + i, "level": decision.level.label, **_numbers(decision), "sample": full.as_dict()})
    return out


def status(t: float, level: str, available_gib: float, restart_allowed: bool = True) -> dict:
    """watchdog.json as Guard._write makes it."""
    policy = Policy(PolicyConfig(floors=FLOORS))
    decision = policy.observe(0.0, int(available_gib * GIB), None)
    assert decision.level.label == level
    return {
        "t": t, "pid": 4242, "level": level, "action": decision.action, "floors_gib": _floors(FLOORS),
        "last_kill": None, **_numbers(decision),
    }  # fmt: skip


# ---- the model ------------------------------------------------------------------------------------


def test_guard_records_fold_into_level_floors_headroom_psi_and_series() -> None:
    """jsonl records then the status: level and reason of the newest, floors from the status, headroom by hand."""
    records = guard_records([30.0, 20.0, 14.0], gb10_gpu())
    view = WatchdogView.from_records([*records, status(T0 + 2.5, "warn", 14.0)])
    assert (view.level, view.records, view.skipped) == ("warn", 4, 0)
    assert view.reason == "MemAvailable 14.0 GiB < WARN floor 16.0 GiB"
    assert view.last_t == T0 + 2.5 and view.guard_pid == 4242 and view.action == "warn"
    assert view.floors == FLOORS and view.available_gib == pytest.approx(14.0)
    assert view.total_gib == pytest.approx(HOST_128G / GIB)
    room = headroom_gib(view)  # MemAvailable - floor: 14 - 16, 14 - 10, 14 - 6
    assert room == pytest.approx({"warn": -2.0, "abort": 4.0, "kill": 8.0})
    assert view.psi == Pressure(some_avg10=1.5, full_avg10=0.5, some_avg60=0.75)
    assert view.target is not None and view.target.usage_bytes == 40 * GIB and view.target.limit_bytes is None
    assert list(view.series["available_gib"].points) == pytest.approx([30.0, 20.0, 14.0])
    assert list(view.series["gpu_util_pct"].points) == [87.0, 87.0, 87.0]
    assert view.series["gpu_temp_c"].last() == 61.0 and view.series["gpu_power_w"].last() == 45.25
    assert view.series["gpu_sm_clock_mhz"].last() == 2418.0
    assert record_age_s(view, T0 + 4.0) == pytest.approx(1.5)


def test_floors_unknown_until_a_status_and_headroom_none() -> None:
    """watchdog.jsonl does not carry the floors: headroom stays None until a status or guard_started."""
    view = WatchdogView.from_records(guard_records([20.0], None))
    assert view.floors is None and headroom_gib(view) == {"warn": None, "abort": None, "kill": None}
    view.apply(parse_event({"v": 1, "t": T0 + 5, "type": "guard_started", "pid": 7, "runner_pid": 6,
                            "floors_gib": _floors(FLOORS), "mlocked": True, "oom_score_adj": None}))  # fmt: skip
    assert headroom_gib(view) == pytest.approx({"warn": 4.0, "abort": 10.0, "kill": 14.0})
    assert WatchdogView().level == "unknown" and headroom_gib(WatchdogView())["kill"] is None


def test_history_is_bounded_and_a_repeated_sample_adds_no_point() -> None:
    """history_points=5 keeps the newest 5; a record repeating its sample (same t) adds nothing."""
    records = guard_records([float(20 + i) for i in range(12)], gb10_gpu())
    view = WatchdogView.from_records(records, history_points=5)
    assert list(view.series["available_gib"].points) == pytest.approx([27.0, 28.0, 29.0, 30.0, 31.0])
    assert all(len(s.points) == 5 for s in view.series.values())
    again = {**records[-1], "t": T0 + 20}
    view.apply(again)
    assert len(view.series["available_gib"].points) == 5 and view.series["available_gib"].last() == pytest.approx(31)
    big = WatchdogView.from_records(guard_records([20.0] * 300, None))
    assert len(big.series["available_gib"].points) == 240 and big.records == 300


def test_gb10_gpu_memory_is_unified_not_zero() -> None:
    """NOT_SUPPORTED device memory: kind "unified", no device figure, processes' sum kept."""
    view = WatchdogView.from_records(guard_records([20.0], gb10_gpu()))
    gpu = view.gpu
    assert gpu is not None and gpu.available and gpu.device_mem_total is None
    assert gpu_memory_kind(gpu) == "unified" and not gpu_memory_reported(gpu)
    assert gpu_process_gib(gpu) == pytest.approx(3.0) and gpu_na_reason(gpu) is None
    discrete = NvmlSampler(nvml=FakeNvml(total=80 * GIB)).sample(24 * GIB)
    assert gpu_memory_kind(discrete) == "discrete" and gpu_memory_reported(discrete)


def test_no_gpu_is_na_with_the_records_reason_and_series_without_values() -> None:
    """A GpuSample.unavailable record: N/A with its reason; GPU series hold None, never 0."""
    reason = "NVML is not available: nvidia-ml-py is not installed (No module named 'pynvml')"
    view = WatchdogView.from_records(guard_records([20.0, 19.0], GpuSample.unavailable(reason)))
    assert gpu_memory_kind(view.gpu) == "n/a" and gpu_na_reason(view.gpu) == reason
    assert gpu_process_gib(view.gpu) is None and not gpu_memory_reported(view.gpu)
    for key in ("gpu_util_pct", "gpu_temp_c", "gpu_power_w", "gpu_sm_clock_mhz"):
        assert list(view.series[key].points) == [None, None] and not view.series[key].has_data()
    assert view.series["available_gib"].has_data()
    no_sample = WatchdogView.from_records(
        [{"t": T0, "level": "ok", **_numbers(Policy(PolicyConfig(FLOORS)).observe(0, 20 * GIB))}]
    )
    assert gpu_memory_kind(no_sample.gpu) == "n/a" and gpu_na_reason(no_sample.gpu) == "no GPU sample yet"
    assert all(len(s.points) == 0 and s.last() is None for s in no_sample.series.values())


def test_the_newest_record_wins_across_streams() -> None:
    """A status at t+10 (abort) then an older jsonl record (warn): the level stays abort; its sample still counts."""
    view = WatchdogView.from_records([status(T0 + 10, "abort", 8.0)])
    older = guard_records([14.0], None, t0=T0 + 5)[0]
    view.apply(older)
    assert view.level == "abort" and view.available_gib == pytest.approx(8.0)
    assert view.series["available_gib"].last() == pytest.approx(14.0) and view.records == 2


def test_guard_events_set_floors_lost_and_stopped_and_others_are_ignored() -> None:
    """guard_started / watchdog_level / guard_ended_target / guard_lost fold in, read back from events.jsonl lines;
    other events are not malformed."""
    lines = [
        {"v": 1, "t": T0, "type": "run_started", "run_id": "r", "plan": "p"},
        {"v": 1, "t": T0 + 1, "type": "guard_started", "pid": 9, "runner_pid": 8, "floors_gib": _floors(FLOORS),
         "mlocked": True, "oom_score_adj": -900},
        {"v": 1, "t": T0 + 2, "type": "watchdog_level", "level": "kill", "previous": "ok",
         **_numbers(Policy(PolicyConfig(FLOORS)).observe(0, 5 * GIB))},
        {"v": 1, "t": T0 + 3, "type": "guard_ended_target", "cause": "memory KILL: …", "kill": True,
         "outcome": "killed process group 123", "target": {"kind": "process", "arm": "a", "mode": "primary",
         "pid": 123, "container": None}, "took_s": 0.01},
    ]  # fmt: skip
    view = WatchdogView.from_records(map(parse_event, lines))
    assert (view.level, view.floors, view.guard_pid, view.skipped) == ("kill", FLOORS, 9, 0)
    assert view.records == 3 and view.available_gib == pytest.approx(5.0) and view.restart_allowed is False
    assert view.last_kill == {"t": T0 + 3, "arm": "a", "mode": "primary", "outcome": "killed process group 123",
                              "reason": "memory KILL: …"}  # fmt: skip
    view.apply(parse_event({"v": 1, "t": T0 + 4, "type": "guard_lost", "reason": "the guard exited with code -9"}))
    assert view.level == "lost" and "the guard exited with code -9" in view.reason
    view.apply(parse_event({"v": 1, "t": T0 + 5, "type": "guard_started", "pid": 10, "runner_pid": 8,
                            "floors_gib": _floors(FLOORS), "mlocked": True, "oom_score_adj": None}))  # fmt: skip
    assert view.level == "unknown" and view.guard_pid == 10
    view.apply(parse_event({"v": 1, "t": T0 + 6, "type": "guard_stopped", "reason": "stopped by the runner"}))
    assert view.level == "unknown" and "stopped by the runner" in view.reason


def test_malformed_records_are_skipped_and_counted_without_changing_the_view() -> None:
    """Non-objects, bad t, unknown level, bad floors, a non-object sample, an empty object: skipped, counted."""
    view = WatchdogView.from_records([status(T0, "ok", 20.0)])
    before = (view.level, view.reason, view.floors, view.available_gib, view.last_t)
    bad = [
        "not json", 5, None, ["level", "ok"], {}, {"t": "yesterday", "level": "kill"},
        {"t": math.nan, "level": "kill"}, {"t": T0 + 1, "level": "panic"}, {"t": T0 + 1, "level": 3},
        {"t": T0 + 1, "floors_gib": {"warn": 1, "abort": 2, "kill": 3}}, {"t": T0 + 1, "floors_gib": "16/10/6"},
        {"t": T0 + 1, "level": "kill", "sample": "x"}, {"t": T0 + 1, "unknown": 1},
    ]  # fmt: skip
    for record in bad:
        view.apply(record)
    assert view.skipped == len(bad) and view.records == 1 and view.last_skip
    assert (view.level, view.reason, view.floors, view.available_gib, view.last_t) == before
    assert all(len(s.points) == 0 for s in view.series.values())


def test_unknown_and_odd_fields_are_tolerated() -> None:
    """Extra fields are ignored; a value that is not a number is None (N/A), never 0; odd GPU/PSI shapes are N/A."""
    record = guard_records([20.0], gb10_gpu())[0]
    record["future_field"] = {"x": 1}
    record["available_gib"] = "lots"
    record["sample"]["psi"] = {"some_avg10": "high", "full_avg10": True, "some_total": 12}
    record["sample"]["gpu"]["temp_c"] = None
    record["sample"]["gpu"]["util_pct"] = "87"
    record["sample"]["target"] = "gone"
    view = WatchdogView.from_records([record])
    assert view.skipped == 0 and view.level == "ok" and view.available_gib is None
    assert view.psi == Pressure(some_total=12) and view.target is None
    assert view.series["gpu_temp_c"].last() is None and view.series["gpu_util_pct"].last() is None
    assert view.series["gpu_power_w"].last() == 45.25
    view.apply({"t": T0 + 9, "level": "ok", "sample": {"t": T0 + 9, "gpu": {"reason": "x"}}})
    assert gpu_memory_kind(view.gpu) == "n/a" and view.series["available_gib"].last() is None


async def test_records_written_by_the_real_guard_fold(tmp_path) -> None:
    """The guard loop over a fake /proc (20 → 9 → 7 GiB, floors 10/8/6, PSI, no GPU): its own files fold into ABORT."""
    proc = tmp_path / "proc"
    proc.mkdir()
    (proc / "pressure").mkdir()
    (proc / "pressure" / "memory").write_text(PSI)
    set_available(proc, 20)
    guard = make_guard(tmp_path, proc)
    stop = asyncio.Event()
    loop = asyncio.create_task(guard.run(stop))
    jsonl, run = guard.run_dir.watchdog_jsonl, guard.run_dir

    def recorded(level: str) -> bool:
        return any(r.get("level") == level and r.get("sample") for r in read_jsonl(jsonl)) if jsonl.exists() else False

    try:
        assert await until(lambda: guard.last_full is not None, 5)
        set_available(proc, 9)
        assert await until(lambda: recorded("warn"), 5)
        set_available(proc, 7)
        assert await until(
            lambda: recorded("abort") and (read_json(run.watchdog_json) or {}).get("level") == "abort", 5
        )
    finally:
        stop.set()
        await asyncio.wait_for(loop, 10)
    view = WatchdogView.from_records(read_jsonl(jsonl))
    assert view.level == "abort" and view.floors is None and view.skipped == 0
    view.apply(read_json(run.watchdog_json))
    events = map(parse_event, read_jsonl(run.events))
    view = WatchdogView.from_records([*read_jsonl(jsonl), read_json(run.watchdog_json), *events])
    assert view.skipped == 0 and view.floors == Floors(10, 8, 6)
    assert view.level == "unknown" and "stopped by the runner" in view.reason  # guard_stopped is the newest
    assert view.available_gib == pytest.approx(7.0) and headroom_gib(view)["kill"] == pytest.approx(1.0)
    assert view.psi is not None and view.psi.full_avg10 == 0.5
    assert gpu_na_reason(view.gpu) == "test: no GPU" and not view.series["gpu_util_pct"].has_data()
    assert view.series["available_gib"].has_data() and view.restart_allowed is False


# ---- the panel ------------------------------------------------------------------------------------


def test_spark_text_scales_buckets_and_leaves_gaps() -> None:
    """Min..max onto ▁..█ (round((v-lo)/(hi-lo)*7)); None is a gap; more points than cells are averaged."""
    assert spark_text([0, 6, 14, None, 4], 10) == "▁▄█ ▃"  # 6/14*7 = 3, 4/14*7 = 2
    assert spark_text([0, 50, 100], 10, lo=0, hi=100) == "▁▅█"
    assert spark_text([5, 5], 10) == "▄▄"
    assert spark_text([None, None], 10) == "  "
    assert spark_text([0, 2, 4, 6, None, None], 3) == "▁█ "  # buckets: mean(0,2)=1, mean(4,6)=5, none
    assert spark_text([], 10) == "" and spark_text([1.0], 0) == ""


class PanelApp(App[None]):
    def compose(self) -> ComposeResult:
        yield WatchdogPanel(id="wd")


async def test_panel_renders_level_floors_and_unified_memory() -> None:
    """GB10 records at WARN: the badge, the three floors with headroom, "unified", sparklines with last values."""
    view = WatchdogView.from_records([*guard_records([30.0, 20.0, 14.0], gb10_gpu()), status(T0 + 2.5, "warn", 14.0)])
    app = PanelApp()
    async with app.run_test(size=(110, 30)) as pilot:
        panel = app.query_one("#wd", WatchdogPanel)
        assert "UNKNOWN" in panel.render().plain  # before any record
        panel.update_view(view)
        await pilot.pause()
        text = panel.render().plain
        assert panel.view is view and panel.size.height == panel_height(view) == len(text.splitlines()) == 13
    assert " WARN " in text and "MemAvailable 14.0 GiB < WARN floor 16.0 GiB" in text
    assert "floors GiB   WARN 16.0 (-2.0)  ABORT 10.0 (+4.0)  KILL 6.0 (+8.0)\n" in text
    assert "memory unified with the host" in text and "processes 3.0 GiB" in text
    assert "some 1.5%  full 0.5%" in text and "cgroup v2: usage 40.0 GiB, limit none" in text
    assert "87 %" in text and "61 °C" in text and "45.2 W" in text and "2418 MHz" in text and "14.0 GiB" in text
    assert text.count("┃") == 3 and " 32 GiB" in text and "N/A" not in text.split("GPU")[1]


async def test_panel_without_gpu_says_na_with_the_reason() -> None:
    """No GPU: "N/A: reason", GPU series "N/A (not reported)", MemAvailable still drawn; KILL badge."""
    reason = "NVML init failed: Driver Not Loaded"
    records = guard_records([8.0, 5.0], GpuSample.unavailable(reason))
    view = WatchdogView.from_records([*records, {**status(T0 + 3, "kill", 5.0)}, "garbage"])
    app = PanelApp()
    async with app.run_test(size=(100, 30)) as pilot:
        panel = app.query_one("#wd", WatchdogPanel)
        panel.update_view(view)
        await pilot.pause()
        text = panel.render().plain
    mem, util, temp, power, clock = text.splitlines()[-6:-1]  # the series rows, in SERIES order
    assert " KILL " in text and f"N/A: {reason}" in text and "unified" not in text
    assert mem.startswith("MemAvailable") and mem.endswith("5.0 GiB") and "▁" in mem and "█" in mem
    for row, label in ((util, "GPU util"), (temp, "GPU temp"), (power, "GPU power"), (clock, "SM clock")):
        assert row.startswith(label) and row.endswith("N/A (not reported)")
    assert "skipped 1" in text
    assert panel_height(view) == len(text.splitlines())


def test_render_view_of_an_empty_view_is_all_na() -> None:
    """Nothing folded yet: UNKNOWN, floors N/A, GPU N/A, every series N/A; no zeros invented."""
    text = render_view(WatchdogView(), 80).plain
    assert "UNKNOWN" in text and "no guard record yet" in text and "MemAvailable N/A" in text
    assert "floors       N/A" in text and "GPU          N/A: no GPU sample yet" in text
    assert text.count("N/A (not reported)") == 5 and " 0.0" not in text
    assert panel_height(WatchdogView()) == len(text.splitlines())
