"""The region-timing table and its calibration, computed by hand on small buffers."""

from __future__ import annotations

import pytest
import torch

from engine.kernels.region_timing import PARALLEL, SINGLE, RegionTimingError
from runners.evidence.region_decode import calibrate, cta_spans, profiler_mean, region_table, span_median
from runners.evidence.region_table import CAPTURED, calibration_line, region_rows

# 3 CTAs, 2 regions (start, end ticks); CTA 2 runs only region 0; row 3 lies past a 3-CTA grid
ROWS = [
    [(0, 100), (100, 300)],  # span 300
    [(10, 130), (130, 410)],  # span 400
    [(20, 120), (0, 0)],  # span 100
    [(0, 10_000), (0, 10_000)],  # not launched
]
BUFFER = torch.tensor(ROWS, dtype=torch.int64)


def test_a_cta_span_runs_from_its_first_start_to_its_last_end_over_the_regions_it_ran() -> None:
    assert cta_spans(BUFFER, 3).tolist() == [300, 400, 100]
    assert span_median(BUFFER, 3) == 300.0
    idle = torch.zeros(2, 2, 2, dtype=torch.int64)
    assert cta_spans(idle).numel() == 0 and span_median(idle) is None


def test_the_profiler_mean_is_the_exact_name_else_the_one_name_containing_it_pooled_by_calls() -> None:
    table = [
        {"name": "wo_gemv_kernel", "n_calls": 3, "mean_us": 10.0},
        {"name": "wo_gemv_kernel", "n_calls": 1, "mean_us": 14.0},
        {"name": "attention_split", "n_calls": 2, "mean_us": 5.0},
        {"name": "attention_combine", "n_calls": 2, "mean_us": 1.0},
        {"name": "broken", "n_calls": 0, "mean_us": 1.0},
        {"name": "nan", "n_calls": 1, "mean_us": float("nan")},
        "not a row",
    ]
    assert profiler_mean(table, "wo_gemv_kernel") == (11.0, None)  # (3·10 + 14) / 4
    assert profiler_mean(table, "gemv") == (11.0, None)
    mean, why = profiler_mean(table, "attention")
    assert mean is None and "2 kernels in the step's profile contain 'attention'" in why
    assert profiler_mean(table, "mlp") == (None, "no kernel named 'mlp' in the step's profile")
    assert profiler_mean(None, "wo") == (None, "no profiler kernel table for the step to find 'wo' in")
    assert profiler_mean(table, None)[0] is None


def test_tick_ns_converts_and_the_profiler_mean_only_cross_checks() -> None:
    table = [{"name": "k", "n_calls": 1, "mean_us": 0.25}]
    cal = calibrate(300.0, 1.0, "k", table)  # 300 ticks of 1 ns = 0.3 µs vs 0.25 µs: ratio 1.2
    assert (cal.how, cal.unit, cal.scale, cal.span_median_us, cal.flagged) == ("tick_ns", "us", 0.001, 0.3, False)
    assert cal.ratio == pytest.approx(1.2) and "1.20x the profiler mean of k" in cal.note
    off = calibrate(300.0, 10.0, "k", table)  # 3 µs vs 0.25 µs: 12x
    assert off.flagged and off.ratio == pytest.approx(12.0) and off.note.endswith("check tick_ns and the kernel name")
    low = calibrate(300.0, 0.1, "k", table)  # 0.03 µs vs 0.25: 0.12x
    assert low.flagged
    alone = calibrate(300.0, 2.0, None, None)
    assert (alone.scale, alone.ratio, alone.note) == (0.002, None, None)
    unchecked = calibrate(300.0, 2.0, "missing", table)
    assert unchecked.note == "not cross-checked: no kernel named 'missing' in the step's profile"


def test_without_tick_ns_the_profiler_mean_over_the_span_median_scales_ticks() -> None:
    cal = calibrate(300.0, None, "k", [{"name": "k", "n_calls": 2, "mean_us": 6.0}])
    assert (cal.how, cal.unit, cal.scale, cal.profiler_mean_us) == ("profiler mean of k", "us", 0.02, 6.0)
    ticks = calibrate(300.0, None, "k", None)
    assert (ticks.how, ticks.unit, ticks.scale) == (None, "ticks", None)
    assert ticks.note == "in ticks, not µs: no tick_ns, and no profiler kernel table for the step to find 'k' in"
    no_span = calibrate(None, None, "k", [{"name": "k", "n_calls": 1, "mean_us": 6.0}])
    assert no_span.unit == "ticks" and "no positive CTA span" in no_span.note


def test_the_table_is_decode_regions_in_the_calibrated_unit() -> None:
    table = region_table(BUFFER, ["load", "reduce"], active_ctas=3, tick_ns=500.0)  # 0.5 µs per tick
    assert (table["unit"], table["shape"], table["active_ctas"]) == ("us", [4, 2, 2], 3)
    load, reduce = table["regions"]
    # load: durations 100, 120, 100 -> median 100, p99 100 + 0.98·20 = 119.6 (linear, as torch.quantile)
    assert (load["region"], load["active_ctas"], load["kind"]) == ("load", 3, PARALLEL)
    assert load["median_ticks"] == 100.0 and load["median_us"] == 50.0
    assert load["p99_ticks"] == pytest.approx(119.6) and load["p99_us"] == pytest.approx(59.8)
    # reduce: durations 200, 280 (CTA 2 did not run it)
    assert (reduce["active_ctas"], reduce["median_ticks"], reduce["median_us"]) == (2, 240.0, 120.0)
    assert region_rows({"status": CAPTURED, **table}) == [
        ("load", "3", "50.00", "59.80", PARALLEL), ("reduce", "2", "120.00", "139.60", PARALLEL)
    ]  # fmt: skip
    assert calibration_line({"status": CAPTURED, **table}) == "µs from tick_ns (500.000 ns per tick)"


def test_an_uncalibrated_table_stays_in_ticks_and_says_why() -> None:
    one = torch.tensor([[(0, 0)], [(5, 45)]], dtype=torch.int64)
    table = region_table(one)
    assert table["unit"] == "ticks" and table["regions"][0]["median_us"] is None
    section = {"status": CAPTURED, **table}
    assert region_rows(section) == [("region0", "1", "40", "40", SINGLE)]
    assert calibration_line(section) == "in ticks, not µs: no tick_ns, and no kernel named in region_timings.kernel"
    assert calibration_line({"status": "missing", "reason": "no dump"}) == "missing: no dump"


def test_a_buffer_that_is_not_a_region_buffer_is_refused() -> None:
    with pytest.raises(RegionTimingError, match="ctas, regions, 2"):
        region_table(torch.zeros(4, 3, dtype=torch.int64))
    with pytest.raises(RegionTimingError, match="2 region names for 1 regions"):
        region_table(torch.zeros(2, 1, 2, dtype=torch.int64), ["a", "b"])
