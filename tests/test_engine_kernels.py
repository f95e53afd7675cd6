"""The split-K W_O kernel: slot bounds, exact slot-order gather, and its effect on the model."""

from __future__ import annotations

import itertools

import pytest
import torch

from engine.config import ModelConfig
from engine.faults import wo_gemv_dropping_last_slot
from engine.kernels.checks import check_wo_gemv, exact_inputs
from engine.kernels.wo_split import (
    VALID_WO_SPLITS,
    WoSplitError,
    check_wo_split,
    reference_split_order,
    slot_bounds,
    wo_split_gemv,
)
from engine.model import TinyDecoder
from engine.tokenizer import encode


def hand_written_slot_sum(x: torch.Tensor, w: torch.Tensor, num_kv_heads: int, wo_split: int) -> torch.Tensor:
    """The GPU order written out: slot = by*wo_split + bx, partial per slot, gathered in slot order."""
    kh = x.shape[1] // num_kv_heads
    partials = []
    for by in range(num_kv_heads):
        for bx in range(wo_split):
            k0 = by * kh + (kh * bx) // wo_split
            k1 = by * kh + (kh * (bx + 1)) // wo_split
            partials.append(x[:, k0:k1] @ w[k0:k1, :])
    total = partials[0]
    for p in partials[1:]:
        total = total + p
    return total


def test_slot_bounds_cover_k_in_slot_order() -> None:
    bounds = slot_bounds(256, 2, 8)
    assert len(bounds) == 16
    assert bounds[0] == (0, 16) and bounds[7] == (112, 128) and bounds[8] == (128, 144)
    assert all(a[1] == b[0] for a, b in itertools.pairwise(bounds))
    assert bounds[-1][1] == 256


def test_uneven_k_split_follows_the_floor_formula() -> None:
    # Kh = 10, wo_split 4: boundaries at floor(10*bx/4) = 0, 2, 5, 7, 10
    assert slot_bounds(20, 2, 4)[:4] == [(0, 2), (2, 5), (5, 7), (7, 10)]


@pytest.mark.parametrize("wo_split", VALID_WO_SPLITS)
def test_kernel_equals_hand_written_slot_order_sum_exactly(wo_split: int) -> None:
    gen = torch.Generator().manual_seed(wo_split)
    x = torch.randn(3, 256, generator=gen)
    w = torch.randn(256, 256, generator=gen)
    got = wo_split_gemv(x, w, num_kv_heads=2, wo_split=wo_split)
    want = hand_written_slot_sum(x, w, 2, wo_split)
    assert torch.equal(got, want), f"max abs diff {(got - want).abs().max().item()}"


def test_the_gather_order_matters_so_the_exact_check_can_fail() -> None:
    gen = torch.Generator().manual_seed(0)
    x, w = torch.randn(4, 256, generator=gen), torch.randn(256, 256, generator=gen)
    ordered = hand_written_slot_sum(x, w, 2, 8)
    bounds = slot_bounds(256, 2, 8)
    reversed_sum = sum(x[:, a:b] @ w[a:b, :] for a, b in reversed(bounds))
    assert not torch.equal(ordered, reversed_sum)
    torch.testing.assert_close(ordered, reversed_sum)


def test_split_changes_bits_but_stays_within_fp32_tolerance() -> None:
    gen = torch.Generator().manual_seed(1)
    x, w = torch.randn(2, 256, generator=gen), torch.randn(256, 256, generator=gen)
    one, eight = wo_split_gemv(x, w, 2, 1), wo_split_gemv(x, w, 2, 8)
    assert not torch.equal(one, eight)
    torch.testing.assert_close(one, eight, rtol=1e-5, atol=1e-4)


def test_model_logits_for_split_1_and_8_agree_within_fp32_tolerance() -> None:
    cfg = ModelConfig()
    tokens = encode("The soak test ran all night and every arm passed.")
    logits = {}
    for split in (1, 8):
        model = TinyDecoder(cfg, wo_split=split)
        logits[split] = model.forward(tokens, model.new_cache(len(tokens)))[:, :256]
    assert not torch.equal(logits[1], logits[8])
    torch.testing.assert_close(logits[1], logits[8], rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("bad", ["3", "0", "16", "eight", "", "-1"])
def test_other_split_values_are_refused_with_a_clear_error(bad: str) -> None:
    with pytest.raises(WoSplitError, match=r"CUTE_WO_SPLIT.*not one of 1, 2, 4, 8"):
        check_wo_split(bad, "CUTE_WO_SPLIT")
    with pytest.raises(WoSplitError):
        TinyDecoder(ModelConfig(layers=1), wo_split=bad)  # type: ignore[arg-type]


@pytest.mark.parametrize("wo_split", VALID_WO_SPLITS)
def test_reference_split_order_matches_the_kernel_bit_for_bit_on_exact_inputs(wo_split: int) -> None:
    x, w = exact_inputs(64, 24, seed=wo_split)
    want = reference_split_order(x, w, 2, wo_split)
    assert torch.equal(wo_split_gemv(x, w, 2, wo_split), want)
    assert torch.equal(want, x @ w)  # exact inputs: every order gives the same bits


def test_reference_split_order_is_the_sequential_order_not_just_close() -> None:
    gen = torch.Generator().manual_seed(7)
    x, w = torch.randn(1, 512, generator=gen), torch.randn(512, 8, generator=gen)
    ref = reference_split_order(x, w, 4, 8)
    partials = []
    for k0, k1 in slot_bounds(512, 4, 8):
        acc = torch.zeros(1, 8)
        for k in range(k0, k1):
            acc = acc + x[:, k : k + 1] * w[k]
        partials.append(acc)
    assert torch.equal(ref, sum(partials[1:], partials[0]))
    assert torch.allclose(ref, x @ w, atol=1e-4)


@pytest.mark.parametrize("wo_split", VALID_WO_SPLITS)
def test_start_up_checks_pass_for_the_real_kernel(wo_split: int) -> None:
    results = check_wo_gemv(wo_split_gemv, wo_split, 2, 256, 64)
    assert [(r.check, r.passed) for r in results] == [("bit-exact", True), ("tolerance", True)]
    assert results[0].max_abs == 0.0 and 0 <= results[1].max_abs <= results[1].tolerance


@pytest.mark.parametrize("wo_split", VALID_WO_SPLITS)
def test_start_up_checks_catch_a_dropped_slot(wo_split: int) -> None:
    results = check_wo_gemv(wo_gemv_dropping_last_slot, wo_split, 2, 256, 64)
    assert [(r.check, r.passed) for r in results] == [("bit-exact", False), ("tolerance", False)]
    assert results[0].max_abs > 0 and "K=256" in results[0].detail


def test_start_up_checks_catch_a_kernel_off_by_one_ulp() -> None:
    def nudged(x, w, heads, split):
        out = wo_split_gemv(x, w, heads, split)
        return torch.nextafter(out, out + 1)

    exact, tolerance = check_wo_gemv(nudged, 4, 2, 256, 64)
    assert not exact.passed and tolerance.passed  # bit-exact sees what a tolerance cannot
