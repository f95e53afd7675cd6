"""bench.gpu_check, the Python steps of `make gpu-check`: reading pytest's JUnit XML, W_O against the targets."""

from __future__ import annotations

from bench.gpu_check import junit_outcome, target_lines
from runners.bench.kernel_bench import BenchReport, BenchRow

JUNIT = """<?xml version="1.0" encoding="utf-8"?>
<testsuites><testsuite name="pytest" tests="4">
  <testcase classname="tests.engine.test_cute_wo_gemv" name="test_compiles[sm_90a-1]" time="0.4"/>
  <testcase classname="tests.engine.test_cute_wo_gemv" name="test_launch_without_gpu" time="0.0">
    <skipped type="pytest.skip" message="checks the error raised on machines without CUDA">...</skipped>
  </testcase>
  <testcase classname="tests.engine.test_cute_wo_gemv" name="test_bit_exact[1]" time="0.0">
    <skipped type="pytest.skip" message="launching the kernel needs a CUDA GPU">...</skipped>
  </testcase>
  {extra}
</testsuite></testsuites>
"""
FAILURE = """<testcase classname="tests.engine.test_fused_mlp" name="test_repeat" time="1.0">
    <failure message="AssertionError: bits differ&#10;second line">trace</failure></testcase>"""


def test_skips_for_want_of_a_gpu_fail_the_check_only_on_a_gpu_machine(tmp_path):
    xml = tmp_path / "pytest.xml"
    xml.write_text(JUNIT.format(extra=""))
    ok, lines = junit_outcome(xml, gpu_expected=False)
    assert ok and lines[0] == "tests: 1 passed, 0 failed, 2 skipped"
    assert "skipped (no GPU here): launching the kernel needs a CUDA GPU" in lines
    ok, lines = junit_outcome(xml, gpu_expected=True)
    assert not ok
    test = "tests.engine.test_cute_wo_gemv::test_bit_exact[1]"
    assert lines[1:] == [f"SKIPPED ON A GPU MACHINE {test}: launching the kernel needs a CUDA GPU"]


def test_failures_and_a_missing_report_fail_the_check(tmp_path):
    xml = tmp_path / "pytest.xml"
    xml.write_text(JUNIT.format(extra=FAILURE))
    ok, lines = junit_outcome(xml, gpu_expected=False)
    assert not ok and "FAILED tests.engine.test_fused_mlp::test_repeat: AssertionError: bits differ" in lines
    ok, lines = junit_outcome(tmp_path / "missing.xml", gpu_expected=True)
    assert not ok and "pytest did not finish" in lines[0]


def wo_row(split: int, us: float, pct: float) -> BenchRow:
    row = BenchRow("wo_gemv_nvfp4", "cute", f"K=6144 N=5120 kv_heads=4 wo_split={split}", "pass", 17_700_000)
    row.median_us, row.pct_copy_bw = us, pct
    return row


def test_w_o_is_judged_by_copy_bandwidth_on_hopper_and_by_microseconds_on_a_gb10():
    rows = [wo_row(1, 8.0, 75.0), wo_row(8, 30.0, 20.0), BenchRow("wo_gemv_nvfp4", "cute", "wo_split=2", "refused", 1)]
    h200 = target_lines(BenchReport({"device": "NVIDIA H200", "impl": "cute"}, 4300.0, rows))
    assert h200 == [
        "W_O K=6144 N=5120 kv_heads=4 wo_split=1: 8.0 µs, 75 % of copy bandwidth: meets ≥ 70 % of copy bandwidth",
        "W_O K=6144 N=5120 kv_heads=4 wo_split=8: 30.0 µs, 20 % of copy bandwidth: misses ≥ 70 % of copy bandwidth",
    ]
    gb10 = target_lines(BenchReport({"device": "NVIDIA GB10", "impl": "cute"}, 250.0, [wo_row(1, 120.0, 40.0)]))
    assert gb10 == ["W_O K=6144 N=5120 kv_heads=4 wo_split=1: 120.0 µs, 40 % of copy bandwidth: misses ≤ 100 µs"]
    cpu = target_lines(BenchReport({"device": "x86_64", "impl": "torch"}, 20.0, rows))
    assert len(cpu) == 1 and cpu[0].startswith("targets: not judged")
