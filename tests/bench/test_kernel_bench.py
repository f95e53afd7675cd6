"""`gb10-console bench kernels`: the timing bench (gate first, cold caches) and the compile-only build report."""

from __future__ import annotations

import contextlib
import dataclasses
import json
import subprocess
import sys

import pytest
import torch

from engine.faults import wo_gemv_dropping_last_slot
from engine.kernels.wo_split_values import VALID_WO_SPLITS
from runners.bench import kernel_timing
from runners.bench.kernel_bench import MARKDOWN_COLUMNS, SIZES, bench_kernels, markdown_table, pick_impl
from runners.bench.kernel_timing import (
    MIN_LEAD_US,
    SLEEP_CYCLES_PER_US,
    _parse_size,
    cache_bytes,
    launch_lead_us,
    rotation_count,
    summarise,
    time_calls,
)

CLI = [sys.executable, "-m", "console.cli", "bench", "kernels"]


def test_summarise_gives_median_and_inclusive_deciles() -> None:
    t = summarise([float(v) for v in range(1, 12)])  # 1..11
    assert (t.median_us, t.p10_us, t.p90_us, t.calls) == (6.0, 2.0, 10.0, 11)
    assert summarise([5.0]).p90_us == 5.0
    with pytest.raises(ValueError):
        summarise([])


def test_rotation_covers_three_times_the_cache() -> None:
    assert rotation_count(10 << 20, 50 << 20) == 15
    assert rotation_count(400 << 20, 50 << 20) == 1
    assert _parse_size("32768K\n") == 32 << 20 and _parse_size("2M") == 2 << 20
    assert cache_bytes(torch.device("cpu")) >= 32 << 10


def test_time_calls_times_each_call_after_the_warmup() -> None:
    seen = []
    timing = time_calls(seen.append, iters=4, warmup=2, device=torch.device("cpu"))
    assert seen == [0, 1, 2, 3, 4, 5] and timing.calls == 4 and timing.median_us > 0


def test_the_gpu_sleeps_longer_than_the_host_takes_to_issue_a_call() -> None:
    assert launch_lead_us([50_000.0, 40.0, 60.0]) == 180.0  # the first warm-up call compiled: left out
    assert launch_lead_us([10.0, 5.0]) == MIN_LEAD_US
    assert launch_lead_us([500.0]) == 1500.0  # a single warm-up call is all there is
    assert launch_lead_us([]) == MIN_LEAD_US


class FakeStream:
    """Stands in for torch.cuda on a machine without one: records what goes on the stream, in order."""

    def __init__(self) -> None:
        self.ops: list[str] = []
        self.elapsed_ms = iter([0.010, 0.012, 0.011])

    def event(self, enable_timing: bool = False):
        stream = self

        class Event:
            def record(self) -> None:
                stream.ops.append("event")

            def elapsed_time(self, end) -> float:
                return next(stream.elapsed_ms)

        assert enable_timing
        return Event()


@pytest.mark.serial  # a host time under 100 us
def test_on_cuda_each_timed_call_follows_an_l2_flush_and_a_sleep_longer_than_its_launch(monkeypatch) -> None:
    """The CUDA path's order of work, with torch.cuda faked: flush, sleep(lead), start event, call, end event."""
    fake = FakeStream()
    monkeypatch.setattr(torch.cuda, "device", lambda device: contextlib.nullcontext())
    monkeypatch.setattr(torch.cuda, "synchronize", lambda device=None: fake.ops.append("sync"))
    monkeypatch.setattr(torch.cuda, "Event", fake.event)
    monkeypatch.setattr(torch.cuda, "_sleep", lambda cycles: fake.ops.append(f"sleep {cycles}"), raising=False)
    monkeypatch.setattr(kernel_timing, "L2Flush", lambda device: lambda: fake.ops.append("flush"))
    calls = []

    def call(i: int) -> None:
        calls.append(i)
        fake.ops.append(f"call {i}")

    timing = time_calls(call, iters=3, warmup=2, device=torch.device("cuda"))
    assert calls == [0, 1, 2, 3, 4] and timing.calls == 3
    assert (timing.median_us, timing.p10_us, timing.p90_us) == pytest.approx((11.0, 10.2, 11.8))
    sleep = f"sleep {int(MIN_LEAD_US * SLEEP_CYCLES_PER_US)}"  # the fake calls take microseconds: the floor
    timed = ["flush", sleep, "event", "call {}", "event", "sync"]
    assert fake.ops == ["sync", "call 0", "sync", "call 1", "sync", *(op.format(i) for i in (2, 3, 4) for op in timed)]
    assert 0 < timing.host_us < MIN_LEAD_US and timing.launch_hidden


def test_a_kernel_failing_its_gate_is_reported_and_not_timed() -> None:
    impl = dataclasses.replace(pick_impl(), wo=wo_gemv_dropping_last_slot)
    report = bench_kernels(SIZES["tiny"], iters=2, warmup=1, impl=impl)
    wo = [r for r in report.rows if r.kernel == "wo_gemv_nvfp4" and r.correctness != "baseline"]
    assert len(wo) == len(VALID_WO_SPLITS) and not report.ok
    assert all("bit-exact failed" in r.correctness and r.median_us is None for r in wo)
    assert all(r.median_us for r in report.rows if r.kernel != "wo_gemv_nvfp4")


def test_bench_kernels_tiny_writes_a_gated_timed_table(tmp_path) -> None:
    """The real command, end to end: every kernel passes its gate, then is timed against its baseline."""
    out = tmp_path / "bench.json"
    result = subprocess.run([*CLI, "--sizes", "tiny", "--iters", "5", "--json", str(out)],
                            capture_output=True, text=True, timeout=300)  # fmt: skip
    assert result.returncode == 0, result.stderr + result.stdout
    assert "paged_decode" in result.stdout and "Traceback" not in result.stderr
    report = json.loads(out.read_text())
    meta, rows = report["meta"], report["rows"]
    assert meta["seed"] == 0 and meta["torch"] == torch.__version__ and meta["arch"]
    assert report["copy_bandwidth_gbs"] > 0
    kernels = {r["kernel"] for r in rows}
    assert kernels == {"wo_gemv_nvfp4", "paged_decode_attention", "fused_mlp_swiglu"}
    for r in rows:
        assert r["correctness"] in ("pass", "baseline"), r
        assert 0 < r["p10_us"] <= r["median_us"] <= r["p90_us"] and r["gbs"] > 0 and r["payload_bytes"] > 0
    measured = [r for r in rows if r["correctness"] == "pass"]
    assert all(r["speedup_vs_baseline"] > 0 for r in measured)
    assert next(r["speedup_vs_split1"] for r in measured if r["kernel"] == "wo_gemv_nvfp4") == 1.0
    assert all(r["host_us"] is None and r["launch_hidden"] is None for r in rows)  # CUDA only
    assert "wall clock" in meta["timing"]


def test_markdown_table_has_a_row_per_variant_and_dashes_for_what_was_not_timed() -> None:
    impl = dataclasses.replace(pick_impl(), wo=wo_gemv_dropping_last_slot)
    report = bench_kernels(SIZES["tiny"], iters=2, warmup=1, impl=impl)
    lines = markdown_table(report).splitlines()
    assert lines[0] == "| " + " | ".join(MARKDOWN_COLUMNS) + " |" and len(lines) == 2 + len(report.rows)
    assert all(line.count(" | ") == len(MARKDOWN_COLUMNS) - 1 for line in lines[2:])  # no stray "|" in a cell
    rows = dict(zip([(r.kernel, r.impl, r.variant) for r in report.rows], lines[2:], strict=True))
    refused = rows["wo_gemv_nvfp4", "torch", "K=256 N=256 kv_heads=2 wo_split=1"]
    assert refused.split(" | ")[3:9] == ["–"] * 6 and "bit-exact failed" in refused
    mlp = next(r for r in report.rows if r.kernel == "fused_mlp_swiglu" and r.impl == "torch")
    cells = rows[mlp.kernel, mlp.impl, mlp.variant].split(" | ")
    assert cells[3] == f"{mlp.median_us:.1f} ({mlp.p10_us:.1f}–{mlp.p90_us:.1f})" and cells[4] == f"{mlp.gbs:.0f}"
    assert cells[6] == f"{mlp.speedup_vs_baseline:.2f}" and cells[7] == "–" and cells[9] == "pass |"


def test_bench_kernels_compile_only_reports_every_build_for_sm_121a(tmp_path) -> None:
    pytest.importorskip("cutlass", reason="nvidia-cutlass-dsl is not installed: pip install nvidia-cutlass-dsl==4.8.1")
    out = tmp_path / "kernels.json"
    args = ["--compile-only", "--arch", "sm_121a", "--dump-dir", str(tmp_path / "dump"), "--json", str(out)]
    result = subprocess.run([*CLI, *args], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr + result.stdout
    rows = json.loads(out.read_text())["kernels"]
    wo = [r["variant"].split()[-1] for r in rows if r["kernel"] == "wo_gemv_nvfp4"]
    assert wo == [f"wo_split={s}" for s in VALID_WO_SPLITS]
    assert {r["kernel"] for r in rows} == {"wo_gemv_nvfp4", "fused_mlp_swiglu", "paged_decode_attention"}
    assert all(r["arch"] == "sm_121a" and r["vectorized_128"] and r["cubin_bytes"] > 0 for r in rows)
    bad = subprocess.run([*CLI, "--compile-only", "--arch", "sm_999z"], capture_output=True, text=True, timeout=300)
    assert bad.returncode == 2 and "does not know 'sm_999z'" in bad.stderr and "Traceback" not in bad.stderr
