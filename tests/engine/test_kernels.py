"""The split-K W_O kernel: slot bounds, exact slot-order gather, and its effect on the model."""

from __future__ import annotations

import itertools

import pytest
import torch

from engine.config import ModelConfig
from engine.faults import wo_gemv_dropping_last_slot
from engine.kernels import nvfp4
from engine.kernels.checks import check_wo_gemv, exact_inputs, nvfp4_exact_inputs
from engine.kernels.wo_nvfp4 import prepare_wo, wo_torch
from engine.kernels.wo_split import (
    reference_chained,
    reference_split_order,
    slot_bounds,
    wo_split_gemv,
)
from engine.kernels.wo_split_values import VALID_WO_SPLITS, WoSplitError, check_wo_split
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


def test_model_logits_for_split_1_and_8_differ_in_bits_but_agree_closely() -> None:
    cfg = ModelConfig()
    tokens = encode("The soak test ran all night and every arm passed.")
    logits = {}
    for split in (1, 8):
        model = TinyDecoder(cfg, wo_split=split)
        logits[split] = model.forward(tokens, model.new_cache(len(tokens)))[:, :256]
    assert not torch.equal(logits[1], logits[8])
    # W_O reads bf16 activations (as the CuTe kernel does), so an fp32 difference upstream can flip a bf16
    # rounding: differences stay far below bf16's own step (2^-8 relative) times the logits' size.
    torch.testing.assert_close(logits[1], logits[8], rtol=1e-2, atol=5e-3)


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
    results = check_wo_gemv(wo_torch, wo_split, 2, 256, 64)
    assert [(r.check, r.passed) for r in results] == [("bit-exact", True), ("tolerance", True)]
    assert results[0].max_abs == 0.0 and 0 <= results[1].max_abs <= results[1].tolerance


@pytest.mark.parametrize("wo_split", VALID_WO_SPLITS)
def test_start_up_checks_catch_a_dropped_slot(wo_split: int) -> None:
    results = check_wo_gemv(wo_gemv_dropping_last_slot, wo_split, 2, 256, 64)
    assert [(r.check, r.passed) for r in results] == [("bit-exact", False), ("tolerance", False)]
    assert results[0].max_abs > 0 and "K=256" in results[0].detail


def test_start_up_checks_catch_a_kernel_off_by_one_ulp() -> None:
    def nudged(x, w, heads, split):
        out = wo_torch(x, w, heads, split)
        return torch.nextafter(out, out + 1)

    exact, tolerance = check_wo_gemv(nudged, 4, 2, 256, 64)
    assert not exact.passed and tolerance.passed  # bit-exact sees what a tolerance cannot


def test_a_kernel_that_raises_fails_both_checks_and_says_why() -> None:
    def broken(x, w, heads, split):
        raise RuntimeError("cubin failed to load")

    results = check_wo_gemv(broken, 2, 2, 256, 64)
    assert [r.passed for r in results] == [False, False]
    assert all(r.max_abs is None and "RuntimeError: cubin failed to load" in r.detail for r in results)


def test_nvfp4_exact_inputs_make_every_order_give_the_same_products() -> None:
    x, weight = nvfp4_exact_inputs(128, 16, seed=3)
    assert x.dtype == torch.bfloat16 and weight.nvfp4.shape == (16, 128)
    scale = weight.nvfp4.global_scale
    assert scale == 2.0 ** round(torch.log2(torch.tensor(scale)).item())
    products = x.float().T * weight.dense  # [K, N]
    assert torch.equal(products.double(), x.double().T * weight.dense.double())  # exact in fp32
    assert torch.equal(nvfp4.dequantize(weight.nvfp4).T, weight.dense)


def test_wo_torch_reads_bf16_rounded_activations_and_the_decoded_nvfp4_weight() -> None:
    gen = torch.Generator().manual_seed(5)
    x, w = torch.randn(2, 128, generator=gen), torch.randn(128, 32, generator=gen) / 12
    weight = prepare_wo(w)
    got = wo_torch(x, weight, 2, 4)
    want = x.to(torch.bfloat16).double() @ nvfp4.dequantize(nvfp4.quantize(w.T.contiguous())).T.double()
    torch.testing.assert_close(got.double(), want, rtol=1e-5, atol=1e-5)
    assert (weight.dense - w).abs().max() < 0.25 * w.abs().max()  # 4-bit weights: close, not equal


def test_chained_order_is_one_accumulator_across_all_of_k() -> None:
    gen = torch.Generator().manual_seed(11)
    x, w = torch.randn(1, 256, generator=gen), torch.randn(256, 4, generator=gen)
    acc = torch.zeros(1, 4)
    for k in range(256):
        acc = acc + x[:, k : k + 1] * w[k]
    assert torch.equal(reference_chained(x, w), acc)
    assert torch.equal(reference_chained(x, w), reference_split_order(x, w, 1, 1))  # one slot: the same chain
    assert not torch.equal(reference_chained(x, w), reference_split_order(x, w, 4, 8))
    torch.testing.assert_close(reference_chained(x, w), x @ w, rtol=1e-5, atol=1e-5)
