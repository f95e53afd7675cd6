"""CuTe DSL W_O split-K NVFP4 GEMV: compiles for sm_121a and sm_90a without a GPU; bit-exact on a GPU."""

from __future__ import annotations

import math

import pytest
import torch

from engine.kernels import nvfp4
from engine.kernels.cute.build import CuteUnavailableError
from engine.kernels.cute.wo_gemv import compile_wo_gemv, wo_gemv
from engine.kernels.wo_split import VALID_WO_SPLITS, WoSplitError, reference_split_order

pytest.importorskip("cutlass", reason="nvidia-cutlass-dsl is not installed: pip install nvidia-cutlass-dsl==4.8.1")

K, N, KV_HEADS = 6144, 5120, 4  # the W_O shape
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


def test_refuses_wo_split_outside_allowed_values(tmp_path):
    with pytest.raises(WoSplitError, match="1, 2, 4, 8"):
        compile_wo_gemv(K, N, KV_HEADS, 3, "sm_121a", tmp_path)


def test_refuses_slot_ranges_that_are_not_multiples_of_32(tmp_path):
    with pytest.raises(WoSplitError, match="multiple of 32"):
        compile_wo_gemv(512, N, KV_HEADS, 8, "sm_121a", tmp_path)  # 512 / 4 / 8 = 16 values per slot


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the error raised on machines without CUDA")
def test_launch_without_gpu_says_a_gpu_is_needed():
    t = nvfp4.quantize(torch.ones(8, 128))
    with pytest.raises(CuteUnavailableError, match="needs a CUDA GPU"):
        wo_gemv(torch.ones(128, dtype=torch.bfloat16), t.packed, t.scales, t.global_scale, KV_HEADS, 1)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="launching the kernel needs a CUDA GPU")
@pytest.mark.parametrize("wo_split", VALID_WO_SPLITS)
def test_matches_reference_split_order_bit_exactly(wo_split):
    gen = torch.Generator().manual_seed(wo_split)
    w = torch.randn(N, K, generator=gen) * 0.02
    global_scale = 2.0 ** round(math.log2(float(w.abs().max()) / (nvfp4.E2M1_MAX * nvfp4.E4M3_MAX)))
    t = nvfp4.quantize(w, global_scale)  # power-of-two global scale: every x[k] * w[n, k] is exact in fp32
    x = torch.randn(K, generator=gen).to(torch.bfloat16).cuda()
    packed, scales = t.packed.cuda(), t.scales.cuda()
    expected = reference_split_order(x.float().unsqueeze(0), nvfp4.dequantize(t).cuda().T, KV_HEADS, wo_split)[0]
    for _ in range(2):  # the second launch only gathers if the first one reset the arrival counter
        y = wo_gemv(x, packed, scales, t.global_scale, KV_HEADS, wo_split)
        torch.cuda.synchronize()
        assert (y - expected).abs().max().item() == 0


def test_bench_kernels_compile_only_reports_every_build_for_sm_121a(tmp_path):
    import json
    import subprocess
    import sys

    out = tmp_path / "kernels.json"
    cli = [sys.executable, "-m", "console.cli", "bench", "kernels", "--compile-only"]
    result = subprocess.run([*cli, "--arch", "sm_121a", "--dump-dir", str(tmp_path / "dump"), "--json", str(out)],
                            capture_output=True, text=True, timeout=300)  # fmt: skip
    assert result.returncode == 0, result.stderr + result.stdout
    rows = json.loads(out.read_text())["kernels"]
    assert [r["variant"].split()[-1] for r in rows] == [f"wo_split={s}" for s in VALID_WO_SPLITS]
    assert all(r["arch"] == "sm_121a" and r["vectorized_128"] and r["cubin_bytes"] > 0 for r in rows)
    bad = subprocess.run([*cli, "--arch", "sm_999z"], capture_output=True, text=True, timeout=300)
    assert bad.returncode == 2 and "does not know 'sm_999z'" in bad.stderr and "Traceback" not in bad.stderr
