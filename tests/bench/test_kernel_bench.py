"""`gb10-console bench kernels`: the timing bench (gate first, cold caches) and the compile-only build report."""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys

import pytest
import torch

from engine.faults import wo_gemv_dropping_last_slot
from engine.kernels.wo_split import VALID_WO_SPLITS
from runners.bench.kernel_bench import SIZES, bench_kernels, pick_impl
from runners.bench.kernel_timing import _parse_size, cache_bytes, rotation_count, summarise, time_calls

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
