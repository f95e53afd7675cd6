"""NVFP4 codec (exact round trips, rounding, layout) and the region-timing decoder on synthetic buffers."""

from __future__ import annotations

import pytest
import torch

from engine.kernels.nvfp4 import (
    BLOCK,
    Nvfp4Error,
    dequantize,
    e2m1_decode,
    e2m1_encode,
    pack_codes,
    quantize,
    unpack_codes,
)
from engine.kernels.region_timing import BARRIER, PARALLEL, SINGLE, RegionTimingError, decode_regions


def test_every_e2m1_code_decodes_and_encodes_back_exactly() -> None:
    codes = torch.arange(16, dtype=torch.uint8)
    values = e2m1_decode(codes)
    assert values[:8].tolist() == [0.0, 0.5, 1.0, 1.5, 2.0, 3.0, 4.0, 6.0]
    assert values[8:].tolist() == [-0.0, -0.5, -1.0, -1.5, -2.0, -3.0, -4.0, -6.0]
    assert torch.equal(e2m1_encode(values), codes)  # -0 keeps code 8


def test_e2m1_rounds_to_nearest_with_ties_to_the_even_code_and_saturates() -> None:
    halfway = torch.tensor([0.25, 0.75, 1.25, 1.75, 2.5, 3.5, 5.0])
    assert e2m1_encode(halfway).tolist() == [0, 2, 2, 4, 4, 6, 6]
    assert e2m1_encode(torch.tensor([0.26, 0.74, 5.1, 7.0, 1e9])).tolist() == [1, 1, 7, 7, 7]
    assert e2m1_encode(torch.tensor([-0.26, -100.0])).tolist() == [9, 15]


def test_packing_puts_the_first_element_in_the_low_nibble_and_round_trips() -> None:
    codes = torch.tensor([[1, 2, 15, 0]], dtype=torch.uint8)
    assert pack_codes(codes).tolist() == [[0x21, 0x0F]]
    gen = torch.Generator().manual_seed(0)
    many = torch.randint(0, 16, (5, 64), generator=gen, dtype=torch.uint8)
    assert torch.equal(unpack_codes(pack_codes(many)), many)
    with pytest.raises(Nvfp4Error, match="even"):
        pack_codes(torch.zeros(1, 3, dtype=torch.uint8))


def test_quantize_dequantize_is_exact_on_representable_weights_and_requantizes_to_the_same_bits() -> None:
    gen = torch.Generator().manual_seed(1)
    n, k = 6, 64
    codes = torch.randint(0, 16, (n, k), generator=gen, dtype=torch.uint8)
    codes[:, ::BLOCK] = 7  # every block reaches ±6, so its scale is recovered exactly from its amax
    scales = (2.0 ** torch.randint(-4, 4, (n, k // BLOCK), generator=gen)).to(torch.float8_e4m3fn)
    w = (e2m1_decode(codes).view(n, -1, BLOCK) * scales.float().unsqueeze(-1) * 0.5).view(n, k)
    q = quantize(w, global_scale=0.5)
    assert torch.equal(dequantize(q), w)  # bit for bit
    again = quantize(dequantize(q), global_scale=q.global_scale)
    assert torch.equal(again.packed, q.packed) and torch.equal(again.packed, pack_codes(codes))
    assert torch.equal(again.scales.view(torch.uint8), scales.view(torch.uint8))
    assert q.shape == (n, k) and q.payload_bytes() == n * k // 2 + n * k // BLOCK


def test_quantize_error_is_bounded_by_half_a_step_of_each_block() -> None:
    gen = torch.Generator().manual_seed(2)
    w = torch.randn(16, 128, generator=gen)
    q = quantize(w)
    err = (dequantize(q) - w).abs().view(16, -1, BLOCK)
    step = q.scales.float().unsqueeze(-1) * q.global_scale  # E2M1 steps are at most 2 units apart
    assert bool((err <= step + 1e-6).all())
    assert float(w.abs().max()) / q.global_scale == pytest.approx(6 * 448)


def test_quantize_refuses_shapes_it_cannot_block() -> None:
    with pytest.raises(Nvfp4Error, match="multiple of 16"):
        quantize(torch.zeros(4, 20))
    assert torch.equal(dequantize(quantize(torch.zeros(2, 32))), torch.zeros(2, 32))


def buffer(rows: list[list[tuple[int, int]]]) -> torch.Tensor:
    return torch.tensor(rows, dtype=torch.int64)


def test_region_timing_classifies_parallel_barrier_and_single_regions() -> None:
    # 4 CTAs, 3 regions: load (parallel, staggered), wait (enter apart, leave together), gather (one CTA)
    rows = [
        [(0, 100), (100, 400), (0, 0)],
        [(10, 130), (130, 400), (0, 0)],
        [(20, 110), (110, 401), (0, 0)],
        [(30, 150), (150, 400), (400, 450)],
    ]
    stats = decode_regions(buffer(rows), ["load", "wait", "gather"])
    load, wait, gather = stats
    assert (load.kind, load.active_ctas, load.median) == (PARALLEL, 4, 110.0)  # durations 100, 120, 90, 120
    assert (wait.kind, wait.active_ctas) == (BARRIER, 4)
    assert (gather.kind, gather.active_ctas, gather.median, gather.p99) == (SINGLE, 1, 50.0, 50.0)
    assert load.p99 == 120.0
    assert wait.median == 280.5  # durations 300, 270, 291, 250


def test_region_timing_reads_only_the_launched_grid_and_drops_zero_deltas() -> None:
    rows = [[(0, 10)], [(0, 20)], [(5, 5)], [(0, 999)]]  # row 2 did not run it; row 3 is past the grid
    (stats,) = decode_regions(buffer(rows), active_ctas=3)
    assert stats.active_ctas == 2 and stats.median == 15.0
    (never,) = decode_regions(buffer([[(0, 0)], [(7, 7)]]))
    assert (never.active_ctas, never.median, never.kind) == (0, None, "not run")


@pytest.mark.parametrize(
    ("tensor", "kwargs", "says"),
    [
        (torch.zeros(4, 2, dtype=torch.int64), {}, "ctas, regions, 2"),
        (torch.zeros(4, 2, 2, dtype=torch.int32), {}, "int64"),
        (torch.zeros(4, 2, 2, dtype=torch.int64), {"active_ctas": 5}, "grid has 5 CTAs"),
        (torch.zeros(4, 2, 2, dtype=torch.int64), {"region_names": ["a"]}, "1 region names for 2 regions"),
    ],
)
def test_region_timing_refuses_malformed_buffers(tensor: torch.Tensor, kwargs: dict, says: str) -> None:
    with pytest.raises(RegionTimingError, match=says):
        decode_regions(tensor, **kwargs)
