"""Region-timing dumps: the trigger before the replay, the bounded wait, the copy and the decode; then a whole
soak against the mock server as a process target that writes a synthetic dump when it sees the trigger."""

from __future__ import annotations

import asyncio
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from runners.plan.phases import RegionTimingSpec
from runners.plan.steps import StepKey
from runners.run.events import EventLog
from runners.run.files import read_json, read_jsonl
from runners.run.runs import create_run
from runners.soak.execute import execute
from runners.soak.region_timings import DUMP_FILE, RegionDump
from runners.testbed.mock_server import RegionTimingMock, dump_region_timing, synthetic_region_ticks
from tests.support.events import read_events
from tests.support.plans import Plan, sharegpt_phase

STEP = StepKey("a", "supplementary", "regions", 0)


def _dump(tmp_path: Path, profile_dir: Path | None = None, **spec) -> tuple[RegionDump, Path]:
    settings = {"trigger": str(tmp_path / ".dump_region_timings"), "output": str(tmp_path / "out.npy"), "wait_s": 2.0}
    step_dir = tmp_path / "step"
    step_dir.mkdir(exist_ok=True)
    runtime = SimpleNamespace(profile_dir=profile_dir)
    phase = SimpleNamespace(region_timings=RegionTimingSpec(**(settings | spec)))
    return RegionDump.for_step(phase, runtime, step_dir, EventLog(tmp_path / "events.jsonl"), STEP), step_dir


def _events(tmp_path: Path) -> list[tuple[str, str]]:
    """(type, status) of every event the step wrote."""
    return [(e["type"], e.get("status", "")) for e in read_events(tmp_path)]


async def test_the_trigger_is_made_a_stale_output_removed_and_the_dump_copied_and_decoded(tmp_path: Path) -> None:
    profile_dir = tmp_path / "profile"
    profile_dir.mkdir()
    (profile_dir / "out.npy").write_bytes(b"stale from an earlier step")
    kernels = [{"name": "void wo_gemv<4>(float*)", "n_calls": 10, "mean_us": 8.0}]
    dump, step_dir = _dump(tmp_path, profile_dir, trigger="{profile_dir}/t/.dump", output="{profile_dir}/out.npy",
                           regions=["load", "reduce", "gather"], active_ctas=4, kernel="wo_gemv")  # fmt: skip
    await dump.arm()
    assert (profile_dir / "t" / ".dump").exists() and not (profile_dir / "out.npy").exists()
    assert dump_region_timing(RegionTimingMock(str(profile_dir / "t/.dump"), str(profile_dir / "out.npy"), 6, 3))
    section = await dump.collect(kernels=kernels)
    assert section["status"] == "captured" and section["file"] == DUMP_FILE and section["reason"] == ""
    assert np.array_equal(np.load(step_dir / DUMP_FILE), synthetic_region_ticks(6, 3))
    assert not (profile_dir / "out.npy").exists() and not (profile_dir / "t" / ".dump").exists()
    # CTA c < 4 spans region 0 (3c .. 3c + 100 + c) and region 1 (1000 + 3c .. 1000 + 3c + 200 + c): 1200 + c;
    # CTA 0 also runs region 2 (2000 .. 2300): span 2300. Median over 2300, 1201, 1202, 1203 = 1202.5 ticks.
    cal = section["calibration"]
    assert cal["span_median"] == 1202.5 and cal["how"] == "profiler mean of wo_gemv"
    assert cal["scale"] == pytest.approx(8.0 / 1202.5) and section["unit"] == "us"
    assert [r["median_ticks"] for r in section["regions"]] == [101.5, 201.5, 300.0]
    assert _events(tmp_path) == [("region_timings_captured", "")]


async def test_an_output_a_profiled_steps_trace_collection_moved_into_the_step_is_found_there(tmp_path: Path) -> None:
    profile_dir = tmp_path / "profile_dir"
    profile_dir.mkdir()
    dump, step_dir = _dump(tmp_path, profile_dir, trigger="{profile_dir}/.dump", output="{profile_dir}/rt/out.npy")
    await dump.arm()
    moved = step_dir / "profile" / "rt" / "out.npy"  # where runners/soak/trace_files.collect puts it
    moved.parent.mkdir(parents=True)
    np.save(moved, synthetic_region_ticks(2, 1))
    section = await dump.collect()
    assert section["status"] == "captured" and section["source"] == str(moved) and moved.exists()
    assert np.array_equal(np.load(step_dir / DUMP_FILE), synthetic_region_ticks(2, 1))


@pytest.mark.serial  # a 0.3-2 s window
async def test_no_output_within_the_wait_is_missing_and_the_trigger_is_removed(tmp_path: Path) -> None:
    dump, _ = _dump(tmp_path, wait_s=0.3)
    await dump.arm()
    t0 = time.monotonic()
    section = await dump.collect()
    assert 0.3 <= time.monotonic() - t0 < 2.0
    assert section["status"] == "missing" and f"no {tmp_path / 'out.npy'} within 0.3 s" in section["reason"]
    assert not (tmp_path / ".dump_region_timings").exists()
    assert _events(tmp_path) == [("region_timings_missing", "missing")]


@pytest.mark.serial  # 1-2 s bounds
async def test_an_abort_ends_the_wait_and_a_dead_target_gets_one_look(tmp_path: Path) -> None:
    dump, _ = _dump(tmp_path, wait_s=30)
    await dump.arm()
    abort = asyncio.Event()
    asyncio.get_running_loop().call_later(0.2, abort.set)
    t0 = time.monotonic()
    section = await dump.collect(abort=abort)
    assert time.monotonic() - t0 < 2.0 and section["reason"] == "an abort was requested while waiting for the dump"
    ended, _ = _dump(tmp_path, wait_s=30)
    await ended.arm()
    t0 = time.monotonic()
    section = await ended.collect(ended="was killed (signal 9)")
    assert time.monotonic() - t0 < 1.0 and section["status"] == "missing"
    assert "(the serve target was killed (signal 9) during the step: not waited for)" in section["reason"]


async def test_an_output_that_keeps_growing_is_not_read(tmp_path: Path) -> None:
    dump, _ = _dump(tmp_path, wait_s=0.5)
    await dump.arm()

    async def grow() -> None:
        out = tmp_path / "out.npy"
        while True:
            out.write_bytes(out.read_bytes() + b"x" if out.exists() else b"x")
            await asyncio.sleep(0.02)

    writer = asyncio.create_task(grow())
    try:
        section = await dump.collect()
    finally:
        writer.cancel()
    assert section["status"] == "missing" and "was still changing 0.5 s after the replay" in section["reason"]


@pytest.mark.parametrize(
    ("content", "says"),
    [
        (b"\x93NUMPY garbage", "not a numpy .npy array"),
        (np.zeros((4, 3), dtype=np.int64), "region timing buffers are [ctas, regions, 2], got (4, 3)"),
        (np.zeros((4, 3, 2), dtype=np.float32), "region timing buffers hold int64 ticks, got float32"),
        (np.zeros((4, 3, 2), dtype=np.int64), "2 region names for 3 regions"),
        (np.array([{"a": 1}], dtype=object), "not a numpy .npy array"),
    ],
    ids=["garbage", "wrong-shape", "float", "names", "pickle"],
)
async def test_an_unreadable_dump_is_kept_and_said_so(tmp_path: Path, content: bytes | np.ndarray, says: str) -> None:
    dump, step_dir = _dump(tmp_path, regions=["a", "b"])
    await dump.arm()
    if isinstance(content, bytes):
        (tmp_path / "out.npy").write_bytes(content)
    else:
        np.save(tmp_path / "out.npy", content, allow_pickle=True)
    section = await dump.collect()
    assert section["status"] == "unreadable" and says in section["reason"], section
    assert (step_dir / DUMP_FILE).exists() and section["file"] == DUMP_FILE
    assert _events(tmp_path) == [("region_timings_missing", "unreadable")]


async def test_a_profile_dir_path_without_a_profile_dir_is_unavailable_not_a_crash(tmp_path: Path) -> None:
    dump, _ = _dump(tmp_path, None, trigger="{profile_dir}/.dump", output="{profile_dir}/out.npy")
    await dump.arm()
    section = await dump.collect()
    assert section["status"] == "unavailable" and "{profile_dir} cannot be resolved" in section["reason"]
    bad_trigger, _ = _dump(tmp_path, trigger=str(tmp_path / "no" / "such" / ".dump"))
    await bad_trigger.arm()
    section = await bad_trigger.collect()
    assert section["status"] == "unavailable" and section["reason"].startswith("cannot create the trigger")
    none = RegionDump.for_step(SimpleNamespace(region_timings=None), object(), tmp_path, None, STEP)  # type: ignore[arg-type]
    await none.arm()
    assert await none.collect() is None


def _soak_plan(tmp_path: Path) -> Path:
    trigger, output = "{profile_dir}/.dump_region_timings", "{profile_dir}/dumps/region_timings.npy"
    command = [sys.executable, "-m", "console.cli", "bench", "mock-server", "--port", "{port}", "--ttft-ms", "5",
               "--itl-ms", "2", "--tokens", "8", "--region-timing-trigger", trigger,
               "--region-timing-output", output, "--region-timing-ctas", "8",
               "--region-timing-regions", "3"]  # fmt: skip
    watched = {"trigger": trigger, "output": output, "regions": ["load", "reduce", "gather"], "active_ctas": 6,
               "tick_ns": 2.0, "wait_s": 5}  # fmt: skip
    unwatched = {"trigger": str(tmp_path / "nobody-watches"), "output": str(tmp_path / "never.npy"), "wait_s": 0.3}
    phases = [
        sharegpt_phase("regions", mode="supplementary", requests=2, max_tokens=8, http_timeout_s=30,
                       metrics_interval_s=0.2, region_timings=watched),
        sharegpt_phase("unwatched", mode="supplementary", requests=1, max_tokens=8, http_timeout_s=30,
                       metrics_interval_s=0.2, region_timings=unwatched),
    ]  # fmt: skip
    serve = {"kind": "process", "ready_timeout_s": 60, "command": command}
    return Plan("regions", serve, [{"name": "a", "env": {"CUTE_WO_SPLIT": "1"}}], phases).write(tmp_path)


@pytest.mark.slow
async def test_a_soak_reads_the_mock_servers_dump_end_to_end(tmp_path: Path) -> None:
    """A process target (the mock server) dumps into its {profile_dir} when it sees the trigger there:
    region_timings.npy in the step, the decoded table in phase.json, summary.md and the limitations; a dump that
    never comes leaves its step done."""
    run = create_run(_soak_plan(tmp_path), tmp_path / "run", tmp_path)
    result = await execute(run)
    events = read_jsonl(run.events)
    done = [e["step"]["phase"] for e in events if e["type"] == "step_finished"]
    assert done == ["regions", "unwatched"], (result, [e for e in events if e["type"] == "step_failed"])

    step_dir = run.step_dir(StepKey("a", "supplementary", "regions", 0))
    ticks = np.load(step_dir / DUMP_FILE)
    assert np.array_equal(ticks, synthetic_region_ticks(8, 3))
    section = read_json(step_dir / "phase.json")["region_timings"]
    assert (section["status"], section["unit"], section["shape"]) == ("captured", "us", [8, 3, 2])
    assert section["active_ctas"] == 6
    assert section["calibration"]["how"] == "tick_ns" and section["calibration"]["scale"] == 0.002
    # expected per region over the 6 launched CTAs, from the ticks themselves
    grid = ticks[:6].astype(np.float64)
    for r, (name, row) in enumerate(zip(["load", "reduce", "gather"], section["regions"], strict=True)):
        durations = grid[:, r, 1] - grid[:, r, 0]
        durations = durations[durations != 0]
        assert (row["region"], row["active_ctas"]) == (name, len(durations))
        assert row["median_us"] == pytest.approx(np.median(durations) * 0.002)
        assert row["p99_us"] == pytest.approx(np.percentile(durations, 99) * 0.002)
    assert [row["kind"] for row in section["regions"]] == ["parallel work", "parallel work", "single elected CTA"]
    profile_dir = Path(section["source"]).parent.parent
    assert profile_dir == (run.root / "arms" / "a" / "supplementary" / "@profile").resolve()
    assert not (profile_dir / ".dump_region_timings").exists() and not list((profile_dir / "dumps").glob("*"))

    missing = read_json(run.step_dir(StepKey("a", "supplementary", "unwatched", 0)) / "phase.json")["region_timings"]
    assert missing["status"] == "missing" and "within 0.3 s" in missing["reason"]
    assert not (tmp_path / "nobody-watches").exists()
    assert [(e["type"], e["step"]["phase"]) for e in events if e["type"].startswith("region_timings")] == [
        ("region_timings_captured", "regions"), ("region_timings_missing", "unwatched")
    ]  # fmt: skip

    summary = run.summary_md.read_text()
    assert "## Region timings" in summary and "### a/supplementary/regions/0" in summary
    assert "µs from tick_ns (2.000 ns per tick)" in summary
    assert "| load | 6 | 0.21 | 0.21 | parallel work |" in summary  # durations 100..105 ticks: median 102.5
    assert "| gather | 1 | 0.60 | 0.60 | single elected CTA |" in summary
    assert "- region timings missing: a/supplementary/unwatched/0: no " in summary
    steps = read_json(run.summary_json)["steps"]
    assert [s["region_timings"]["status"] for s in steps] == ["captured", "missing"]
