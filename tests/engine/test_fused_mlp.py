"""Fused SwiGLU decode MLP: torch references and checks on CPU; the CuTe DSL kernel compiles without a GPU."""

from __future__ import annotations

import random
from fractions import Fraction

import pytest
import torch

from engine.kernels.checks import FP32_EPS, TOLERANCE_ULPS
from engine.kernels.cute.build import CuteUnavailableError
from engine.kernels.fused_mlp import (
    FusedMlpError,
    check_fused_mlp,
    down_proj_slots,
    exact_inputs,
    fma_f32,
    fused_mlp_slots,
    fused_mlp_slots_with_h,
    mlp_error_scale,
    mlp_reference,
    random_inputs,
    reference_fc1_order,
    reference_fc2_order,
    silu_f32,
    slot_ranges,
    swiglu_hidden,
)
from engine.kernels.wo_split import gather_slots

H, F = 256, 768  # the tiny model's shape
PROD_H, PROD_F, PROD_SLOTS = 5120, 17408, 136  # a production-like shape: F / num_slots = 128
CUTE_REASON = "nvidia-cutlass-dsl is not installed: pip install nvidia-cutlass-dsl==4.8.1"
needs_gpu = pytest.mark.skipif(not torch.cuda.is_available(), reason="launching the kernel needs a CUDA GPU")


def fp32_exact(value: Fraction) -> float:
    """`value` rounded once to fp32 (ties to even), by comparing the fp32 neighbours of its nearest double."""
    near = torch.tensor(float(value), dtype=torch.float32)
    candidates = [near, *(torch.nextafter(near, torch.tensor(inf)) for inf in (float("inf"), float("-inf")))]
    return float(min(candidates, key=lambda t: (abs(Fraction(float(t)) - value), int(t.view(torch.int32)) % 2)))


def test_slot_ranges_cover_ffn_in_slot_order():
    assert slot_ranges(768, 4) == [(0, 192), (192, 384), (384, 576), (576, 768)]
    assert slot_ranges(PROD_F, PROD_SLOTS)[-1] == (PROD_F - 128, PROD_F)


@pytest.mark.parametrize(("ffn", "num_slots"), [(768, 5), (768, 192), (100, 1), (768, 0), (0, 1), (768, True)])
def test_bad_ffn_or_num_slots_is_refused_naming_both(ffn, num_slots):
    with pytest.raises(FusedMlpError, match=rf"ffn={ffn!r}.*num_slots={num_slots!r}"):
        slot_ranges(ffn, num_slots)


def test_the_error_suggests_slot_counts_that_work():
    with pytest.raises(FusedMlpError, match=r"pick num_slots from \[1, 2, 3, 4, 6, 8"):
        fused_mlp_slots(torch.zeros(1, H), torch.zeros(F, H), torch.zeros(F, H), torch.zeros(H, F), 5)


def test_mismatched_weight_shapes_are_refused():
    with pytest.raises(FusedMlpError, match=r"w_down \(768, 256\)"):
        fused_mlp_slots(torch.zeros(1, H), torch.zeros(F, H), torch.zeros(F, H), torch.zeros(F, H), 4)


@pytest.mark.parametrize("num_slots", [1, 4, 12, 96])
def test_fused_mlp_slots_matches_the_float64_mlp_within_tolerance(num_slots):
    x = torch.randn(3, H, generator=torch.Generator().manual_seed(num_slots))
    _, w_gate, w_up, w_down = random_inputs(H, F, seed=num_slots)
    got = fused_mlp_slots(x, w_gate, w_up, w_down, num_slots)
    want = mlp_reference(x, w_gate, w_up, w_down, dtype=torch.float64)
    assert got.dtype == torch.float32 and got.shape == (3, H)
    for row in range(3):
        bound = TOLERANCE_ULPS * FP32_EPS * mlp_error_scale(x[row], w_gate, w_up, w_down)
        assert (got[row].double() - want[row]).abs().max().item() <= bound
    assert (mlp_reference(x, w_gate, w_up, w_down) - want).abs().max().item() <= 1e-4


def test_repeated_calls_give_the_same_bits():
    x, w_gate, w_up, w_down = random_inputs(H, F, seed=7)
    assert torch.equal(
        fused_mlp_slots(x[None], w_gate, w_up, w_down, 4), fused_mlp_slots(x[None], w_gate, w_up, w_down, 4)
    )
    first, second = (fused_mlp_slots_with_h(x, w_gate, w_up, w_down, 4) for _ in range(2))
    assert torch.equal(first[0], second[0]) and torch.equal(first[1], second[1])


def test_fma_f32_rounds_once_where_mul_then_add_rounds_twice():
    a = torch.tensor([1 + 2**-12, 1 + 2**-18])
    b = torch.tensor([1 + 2**-12, (1 - 2**-18) * 2**-24])
    c = torch.tensor([-(1 + 2**-11), 1 + 2**-23])
    # the second case lands on an fp32 midpoint in float64, so rounding through float64 naively gives 1 + 2**-22
    assert fma_f32(a, b, c).tolist() == [2**-24, 1 + 2**-23]
    assert (a * b + c).tolist() == [0.0, 1 + 2**-22]


def test_fma_f32_matches_exact_rational_arithmetic():
    rng = random.Random(3)
    triples = []
    for _ in range(300):
        a, b = rng.uniform(-2, 2), rng.uniform(-2, 2)
        c = -a * b * (1 + rng.choice([0.0, 2**-20, -(2**-23)])) if rng.random() < 0.5 else rng.uniform(-4, 4)
        triples.append((a, b, c))
    a, b, c = (torch.tensor(column, dtype=torch.float32) for column in zip(*triples, strict=True))
    got = fma_f32(a, b, c).tolist()
    want = [
        fp32_exact(Fraction(float(p)) * Fraction(float(q)) + Fraction(float(r)))
        for p, q, r in zip(a, b, c, strict=True)
    ]
    assert got == want


@pytest.mark.parametrize("num_slots", [1, 4, 96])
def test_order_references_agree_with_the_fused_paths_on_exact_inputs(num_slots):
    x, w_gate, w_up, w_down = exact_inputs(H, F, seed=num_slots)
    gate, up = reference_fc1_order(x, w_gate, w_up)
    assert torch.equal(gate, w_gate @ x) and torch.equal(up, w_up @ x)  # every fc1 product and sum is exact
    h = swiglu_hidden(x[None], w_gate, w_up)[0]
    assert torch.equal(h, silu_f32(gate) * up)
    assert torch.equal(fused_mlp_slots_with_h(x, w_gate, w_up, w_down, num_slots)[1], h)
    small_h = torch.randint(-8, 9, (F,), generator=torch.Generator().manual_seed(num_slots)).float() / 8  # exact fc2
    want = down_proj_slots(small_h[None], w_down, num_slots)[0]
    assert torch.equal(reference_fc2_order(small_h, w_down, num_slots), want)


def test_reference_fc2_order_is_the_sequential_fma_order_not_just_close():
    gen = torch.Generator().manual_seed(11)
    hidden, ffn, num_slots = 4, 32, 2
    h, w_down = torch.randn(ffn, generator=gen), torch.randn(hidden, ffn, generator=gen)
    want = torch.zeros(hidden)
    for n in range(hidden):
        partials = []
        for f0, f1 in slot_ranges(ffn, num_slots):
            acc = torch.tensor(0.0)
            for f in range(f0, f1):
                acc = fma_f32(h[f], w_down[n, f], acc)
            partials.append(acc)
        want[n] = partials[0] + partials[1]
    assert torch.equal(reference_fc2_order(h, w_down, num_slots), want)
    x, w_gate, w_up, w_down = random_inputs(H, F, seed=5)
    y, h = fused_mlp_slots_with_h(x, w_gate, w_up, w_down, 4)
    assert not torch.equal(y, down_proj_slots(h[None], w_down, 4)[0])  # matmul order differs in some bits


@pytest.mark.parametrize(("hidden", "ffn", "num_slots"), [(H, F, 1), (H, F, 4), (H, F, 96), (64, 192, 3)])
def test_checks_pass_for_the_torch_implementation(hidden, ffn, num_slots):
    results = check_fused_mlp(fused_mlp_slots_with_h, hidden, ffn, num_slots)
    assert [r.check for r in results] == ["h-tolerance", "bit-exact", "tolerance"]
    assert all(r.passed for r in results), results
    assert results[1].max_abs == 0.0 and results[0].kernel == f"fused_mlp_swiglu[num_slots={num_slots}]"


def drop_last_slot(x, w_gate, w_up, w_down, num_slots):
    """Broken: the last slot's partial never reaches y."""
    _, h = fused_mlp_slots_with_h(x, w_gate, w_up, w_down, num_slots)
    kept = h.clone()
    kept[slot_ranges(h.shape[0], num_slots)[-1][0] :] = 0
    return reference_fc2_order(kept, w_down, num_slots), h


def one_ulp_off(x, w_gate, w_up, w_down, num_slots):
    """Broken by one ulp in y[0]."""
    y, h = fused_mlp_slots_with_h(x, w_gate, w_up, w_down, num_slots)
    y = y.clone()
    y[0] = torch.nextafter(y[0], torch.tensor(float("inf")))
    return y, h


def unfused_fc2(x, w_gate, w_up, w_down, num_slots):
    """Broken order: mul then add (two roundings) instead of an FMA in fc2."""
    _, h = fused_mlp_slots_with_h(x, w_gate, w_up, w_down, num_slots)
    length = h.shape[0] // num_slots
    per_slot_h, per_slot_w = h.reshape(num_slots, length), w_down.float().reshape(-1, num_slots, length)
    acc = torch.zeros(num_slots, w_down.shape[0])
    for i in range(length):
        acc = acc + per_slot_h[:, i : i + 1] * per_slot_w[:, :, i].T
    return gather_slots(acc), h


@pytest.mark.parametrize(
    ("broken", "tolerance_passes"), [(drop_last_slot, False), (one_ulp_off, True), (unfused_fc2, True)]
)
def test_a_broken_kernel_fails_the_bit_exact_check(broken, tolerance_passes):
    h_check, exact, tolerance = check_fused_mlp(broken, H, F, 4)
    assert h_check.passed
    assert not exact.passed and exact.max_abs > 0
    assert tolerance.passed is tolerance_passes


def test_a_wrong_activation_fails_the_h_check():
    def no_silu(x, w_gate, w_up, w_down, num_slots):
        gate, up = reference_fc1_order(x, w_gate, w_up)
        return reference_fc2_order(gate * up, w_down, num_slots), gate * up

    h_check, exact, _ = check_fused_mlp(no_silu, H, F, 4)
    assert not h_check.passed and exact.passed


# CuTe DSL kernel


@pytest.fixture
def cute_dsl():
    return pytest.importorskip("cutlass", reason=CUTE_REASON)


@pytest.mark.parametrize(
    ("arch", "hidden", "ffn", "num_slots"),
    [
        ("sm_121a", H, F, 4),
        ("sm_121a", PROD_H, PROD_F, PROD_SLOTS),
        ("sm_90a", H, F, 4),
        ("sm_90a", PROD_H, PROD_F, PROD_SLOTS),
    ],
)
def test_compiles_with_128_bit_loads(cute_dsl, tmp_path, arch, hidden, ffn, num_slots):
    from engine.kernels.cute.fused_mlp import compile_fused_mlp

    report = compile_fused_mlp(hidden, ffn, num_slots, arch, tmp_path / arch)
    print(
        f"{arch} {report.variant}: {report.registers} registers, cubin {report.cubin_bytes} B, "
        f"128-bit loads {report.vectorized_128}, compile {report.compile_seconds:.2f} s"
    )
    assert report.kernel == "fused_mlp_swiglu" and report.variant == f"H={hidden} F={ffn} num_slots={num_slots}"
    assert report.arch == arch and report.cubin_path.stat().st_size == report.cubin_bytes > 0
    assert report.vectorized_128
    ptx = report.ptx_path.read_text()
    assert "fma.rn.f32" in ptx and "atom.global.acq_rel.add" in ptx and "atom.global.add.f32" not in ptx
    assert report.registers is None or report.registers > 0


@pytest.mark.parametrize(("hidden", "match"), [(250, "hidden=250"), (16384, "shared memory")])
def test_compile_refuses_hidden_sizes_the_kernel_cannot_take(cute_dsl, tmp_path, hidden, match):
    from engine.kernels.cute.fused_mlp import compile_fused_mlp

    with pytest.raises(FusedMlpError, match=match):
        compile_fused_mlp(hidden, F, 4, "sm_121a", tmp_path)


def test_compile_refuses_bad_slot_counts(cute_dsl, tmp_path):
    from engine.kernels.cute.fused_mlp import compile_fused_mlp

    with pytest.raises(FusedMlpError, match="ffn=768, num_slots=7"):
        compile_fused_mlp(H, F, 7, "sm_121a", tmp_path)


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the error raised on machines without CUDA")
def test_launch_without_gpu_says_a_gpu_is_needed(cute_dsl):
    from engine.kernels.cute.fused_mlp import fused_mlp

    x, w_gate, w_up, w_down = (t.to(torch.bfloat16) for t in exact_inputs(H, F, seed=0))
    with pytest.raises(CuteUnavailableError, match="needs a CUDA GPU"):
        fused_mlp(x, w_gate, w_up, w_down, 4)


@needs_gpu
@pytest.mark.parametrize(
    ("hidden", "ffn", "num_slots"), [(H, F, 1), (H, F, 4), (H, F, 96), (PROD_H, PROD_F, PROD_SLOTS)]
)
def test_cute_kernel_passes_the_checks(cute_dsl, hidden, ffn, num_slots):
    from engine.kernels.cute.fused_mlp import fused_mlp

    results = check_fused_mlp(fused_mlp, hidden, ffn, num_slots, device="cuda")  # two launches per check run
    assert all(r.passed for r in results), results


@needs_gpu
@pytest.mark.parametrize(("hidden", "ffn", "num_slots"), [(H, F, 4), (PROD_H, PROD_F, PROD_SLOTS)])
def test_cute_kernel_gives_the_same_bits_on_every_launch(cute_dsl, hidden, ffn, num_slots):
    from engine.kernels.cute.fused_mlp import fused_mlp

    inputs = [t.to(torch.bfloat16).cuda() for t in random_inputs(hidden, ffn, seed=2)]
    # each launch gathers only if the one before reset the arrival counter
    first, second, third = (fused_mlp(*inputs, num_slots) for _ in range(3))
    torch.cuda.synchronize()
    for y, h in (second, third):
        assert torch.equal(y, first[0]) and torch.equal(h, first[1])
