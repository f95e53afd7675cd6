"""CuTe DSL W_O split-K NVFP4 GEMV: compiles for sm_121a and sm_90a without a GPU; bit-exact on a GPU."""

from __future__ import annotations

import pytest
import torch

from engine.kernels import nvfp4
from engine.kernels.backend import cute_kernels
from engine.kernels.checks import check_wo_gemv, nvfp4_exact_inputs
from engine.kernels.cute.build import CuteUnavailableError
from engine.kernels.cute.wo_gemv import compile_wo_gemv, wo_gemv, wo_gemv_shape
from engine.kernels.wo_nvfp4 import prepare_wo
from engine.kernels.wo_split import reference_split_order
from engine.kernels.wo_split_values import VALID_WO_SPLITS, WoSplitError
from tests.support.kernel_inputs import order_sensitive_inputs

pytest.importorskip("cutlass", reason="nvidia-cutlass-dsl is not installed: pip install nvidia-cutlass-dsl==4.8.1")

K, N, KV_HEADS = 6144, 5120, 4  # the issue's W_O shape
VARIANTS = [("sm_121a", split) for split in VALID_WO_SPLITS] + [("sm_90a", 1), ("sm_90a", 8)]


@pytest.mark.parametrize(("arch", "wo_split"), VARIANTS)
def test_compiles_with_128_bit_loads(tmp_path, arch, wo_split):
    report = compile_wo_gemv(K, N, KV_HEADS, wo_split, arch, tmp_path / f"{arch}_{wo_split}")
    print(
        f"{arch} wo_split={wo_split}: {report.registers} registers, cubin {report.cubin_bytes} B, "
        f"128-bit loads {report.vectorized_128}, compile {report.compile_seconds:.2f} s"
    )
    assert report.arch == arch and report.variant.endswith(f"wo_split={wo_split}")
    assert report.ptx_path.stat().st_size > 0
    assert report.cubin_path.stat().st_size == report.cubin_bytes > 0
    assert report.vectorized_128
    if report.registers is None:
        print(f"register count unreadable from {report.cubin_path.name}'s .nv.info; not checked")
    else:
        assert report.registers > 0


@pytest.mark.parametrize(("arch", "wo_split"), [("sm_90a", 1), ("sm_90a", 8), ("sm_121a", 4)])
def test_issue_shape_compiles_the_staged_kernel(tmp_path, arch, wo_split):
    """Coalesced 128-bit cp.async copies of the row block into shared memory, 128-bit shared reads, the f16x2
    decode, no flush-to-zero anywhere (f16 subnormal products must survive) and nothing in local memory."""
    report = compile_wo_gemv(K, N, KV_HEADS, wo_split, arch, tmp_path)
    ptx = report.ptx_path.read_text()
    assert "WoGemvStagedKernel" in report.ptx_path.name
    assert "cp.async.cg.shared.global" in ptx and "ld.shared.v4.b32" in ptx
    assert (
        ptx.count("mul.rn.f16x2") > 0 and ptx.count("fma.rn.f32") == wo_gemv_shape(K, N, KV_HEADS, wo_split).tile_values
    )
    assert ".ftz" not in ptx and ".local" not in ptx
    assert report.registers is not None and report.registers <= 128


def test_refuses_wo_split_outside_allowed_values(tmp_path):
    with pytest.raises(WoSplitError, match="1, 2, 4, 8"):
        compile_wo_gemv(K, N, KV_HEADS, 3, "sm_121a", tmp_path)


def test_refuses_slot_ranges_that_are_not_whole_nvfp4_blocks(tmp_path):
    with pytest.raises(WoSplitError, match="multiple of 16"):
        compile_wo_gemv(256, N, KV_HEADS, 8, "sm_121a", tmp_path)  # 256 / 4 / 8 = 8 values per slot


def test_slots_of_an_odd_number_of_16_value_blocks_use_64_bit_loads(tmp_path):
    """The tiny engine at CUTE_WO_SPLIT=8: 256 / 2 / 8 = 16 values per slot, one NVFP4 block per load."""
    report = compile_wo_gemv(256, 256, 2, 8, "sm_121a", tmp_path)
    ptx = report.ptx_path.read_text()
    assert not report.vectorized_128 and "ld.global.v2.b32" in ptx.replace(".L1::no_allocate", "")


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the error raised on machines without CUDA")
def test_launch_without_gpu_says_a_gpu_is_needed():
    t = nvfp4.quantize(torch.ones(8, 128))
    with pytest.raises(CuteUnavailableError, match="needs a CUDA GPU"):
        wo_gemv(torch.ones(128, dtype=torch.bfloat16), t.packed, t.scales, t.global_scale, KV_HEADS, 1)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="launching the kernel needs a CUDA GPU")
@pytest.mark.parametrize("wo_split", VALID_WO_SPLITS)
def test_passes_the_engine_checks_bit_exactly_at_the_issue_shape(wo_split):
    """The engine's own start-up checks (shared NVFP4 exact inputs, power-of-two global scale) on the GPU kernel."""
    wo = cute_kernels().wo
    for seed in range(2):  # the second pass only gathers if the first launches reset the arrival counter
        exact, tolerance = check_wo_gemv(wo, wo_split, KV_HEADS, K, N, "cuda", seed=seed)
        assert exact.passed and exact.max_abs == 0, exact
        assert tolerance.passed, tolerance


@pytest.mark.skipif(not torch.cuda.is_available(), reason="launching the kernel needs a CUDA GPU")
def test_gpu_kernel_equals_reference_split_order_for_every_split():
    x, weight = nvfp4_exact_inputs(K, N, seed=5, device="cuda")
    t = weight.nvfp4
    for wo_split in VALID_WO_SPLITS:
        want = reference_split_order(x.float(), weight.dense, KV_HEADS, wo_split)[0]
        got = wo_gemv(x[0], t.packed, t.scales, t.global_scale, KV_HEADS, wo_split)
        torch.cuda.synchronize()
        assert torch.equal(got, want), f"wo_split={wo_split}: max |diff| {(got - want).abs().max().item()}"


@pytest.mark.skipif(not torch.cuda.is_available(), reason="launching the kernel needs a CUDA GPU")
def test_gpu_kernel_keeps_the_summation_order_on_inputs_whose_sums_round():
    """The engine's exact inputs sum exactly, so they cannot see the order inside a slot; these (x rescaled by
    2^-12..2^12, products still exact) round, and the kernel must still equal the reference bit for bit."""
    x, t, dense = order_sensitive_inputs(K, N, seed=3)
    x, dense = x.cuda(), dense.cuda()
    t = nvfp4.Nvfp4Tensor(t.packed.cuda(), t.scales.cuda(), t.global_scale)
    for wo_split in VALID_WO_SPLITS:
        want = reference_split_order(x.float(), dense, KV_HEADS, wo_split)[0]
        got = wo_gemv(x[0], t.packed, t.scales, t.global_scale, KV_HEADS, wo_split)
        torch.cuda.synchronize()
        assert torch.equal(got, want), f"wo_split={wo_split}: max |diff| {(got - want).abs().max().item()}"


def poison_next_allocation(numel: int) -> None:
    """Fill a freed block of `numel` fp32 with NaN: torch's caching allocator hands it to the next equal request."""
    torch.full((numel,), float("nan"), device="cuda")


@pytest.mark.skipif(not torch.cuda.is_available(), reason="launching the kernel needs a CUDA GPU")
def test_gpu_kernel_writes_every_output_and_gives_the_same_bits_on_repeat():
    """Random (not exact) inputs; y is poisoned before each launch, and each launch only gathers if the one before
    reset the arrival counters, so a skipped gather or an unwritten row shows as NaN or a different bit."""
    gen = torch.Generator().manual_seed(7)
    weight = prepare_wo(torch.randn(K, N, generator=gen) / K**0.5, "cuda")
    x = torch.randn(K, generator=gen).to(torch.bfloat16).cuda()
    t = weight.nvfp4
    for wo_split in VALID_WO_SPLITS:
        outs = []
        for _ in range(3):
            poison_next_allocation(N)
            outs.append(wo_gemv(x, t.packed, t.scales, t.global_scale, KV_HEADS, wo_split))
        torch.cuda.synchronize()
        assert all(bool(torch.isfinite(y).all()) for y in outs), f"wo_split={wo_split}: unwritten outputs"
        assert all(torch.equal(y, outs[0]) for y in outs[1:]), f"wo_split={wo_split}: bits differ between launches"
