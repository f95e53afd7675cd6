"""Correctness checks the engine runs on its kernels at start, reported in /debug/config `kernel_checks`.

W_O split-K GEMV with NVFP4 weights, for the configured `wo_split` and the model's own shape:
- **bit-exact** against `reference_split_order` on inputs whose products are exact in fp32 (bf16 activations
  i/8, NVFP4 weights with a power-of-two global scale), so any kernel that adds in the split order gives
  identical bits and a wrong slot range or a dropped slot shows as a non-zero difference. The CuTe kernel
  fuses each `acc + x·w` into one FMA; with exact products that rounds exactly like the separate add;
- **tolerance** against a float64 matmul of the same (bf16-rounded, NVFP4-decoded) inputs:
  max |diff| <= 64 · eps(fp32) · max_n Σ_k |x_k·w_kn|.
A kernel that raises fails its check with the error as the detail, so a broken build is reported, not fatal.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import torch

from engine.kernels import nvfp4
from engine.kernels.wo_nvfp4 import WoKernel, WoWeight, bf16_rounded, prepare_wo
from engine.kernels.wo_split import reference_split_order

FP32_EPS = float(torch.finfo(torch.float32).eps)
TOLERANCE_ULPS = 64


@dataclass(frozen=True)
class KernelCheckResult:
    """One check: which kernel and variant, bit-exact or tolerance, the largest difference and the bound."""

    kernel: str
    check: str
    passed: bool
    max_abs: float | None  # None: the kernel raised (the detail says what)
    tolerance: float
    detail: str

    def as_dict(self) -> dict:
        """JSON form (the shape runners read from /debug/config)."""
        return asdict(self)


def exact_inputs(k: int, n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """x [1, K] with values i/8 and w [K, N] with values j/16 for small integers i, j: exact fp32 products and sums."""
    gen = torch.Generator().manual_seed(seed)
    x = torch.randint(-8, 9, (1, k), generator=gen).float() / 8
    w = torch.randint(-8, 9, (k, n), generator=gen).float() / 16
    return x, w


def power_of_two_global_scale(w: torch.Tensor) -> float:
    """The power of two nearest amax / (6·448): with it every decoded NVFP4 weight times a bf16 i/8 is exact in fp32."""
    amax = float(w.abs().max()) if w.numel() else 0.0
    return 2.0 ** round(math.log2(amax / (nvfp4.E2M1_MAX * nvfp4.E4M3_MAX))) if amax > 0 else 1.0


def nvfp4_exact_inputs(k: int, n: int, seed: int, device: torch.device | str = "cpu") -> tuple[torch.Tensor, WoWeight]:
    """bf16 x [1, K] of i/8 and NVFP4 W_O [K, N] with a power-of-two global scale: every x_k·w_kn exact in fp32."""
    gen = torch.Generator().manual_seed(seed)
    x = (torch.randint(-8, 9, (1, k), generator=gen).float() / 8).to(torch.bfloat16)
    w = torch.randn(k, n, generator=gen) / k**0.5
    return x.to(device), prepare_wo(w, device, power_of_two_global_scale(w))


def check_wo_gemv(
    wo: WoKernel, wo_split: int, num_kv_heads: int, k: int, n: int, device: torch.device | str = "cpu", seed: int = 0
) -> list[KernelCheckResult]:
    """Run the bit-exact and tolerance checks of `wo` (the W_O kernel the model uses) for one variant."""
    name = f"wo_split_gemv[wo_split={wo_split}]"
    shape = f"K={k}, N={n}, kv_heads={num_kv_heads}"
    x, weight = nvfp4_exact_inputs(k, n, seed, device)
    reference = reference_split_order(x.float(), weight.dense, num_kv_heads, wo_split)
    exact = _run(wo, x, weight, num_kv_heads, wo_split)
    gen = torch.Generator().manual_seed(seed + 1)
    xr = torch.randn(1, k, generator=gen).to(device)
    wr = prepare_wo(torch.randn(k, n, generator=gen) / k**0.5, device)
    want = bf16_rounded(xr).double() @ wr.dense.double()
    bound = TOLERANCE_ULPS * FP32_EPS * float((bf16_rounded(xr).double().abs() @ wr.dense.double().abs()).max())
    got = _run(wo, xr, wr, num_kv_heads, wo_split)
    return [
        _result(name, "bit-exact", exact, reference.double(), 0.0, f"vs reference_split_order, {shape}"),
        _result(name, "tolerance", got, want, bound, f"vs float64 matmul, {shape}"),
    ]


def _run(wo: WoKernel, x: torch.Tensor, weight: WoWeight, heads: int, split: int) -> torch.Tensor | Exception:
    try:
        return wo(x, weight, heads, split)
    except Exception as exc:  # a kernel that cannot run fails its check instead of stopping the engine
        return exc


def _result(
    name: str, check: str, got: torch.Tensor | Exception, want: torch.Tensor, bound: float, detail: str
) -> KernelCheckResult:
    if isinstance(got, Exception):
        return KernelCheckResult(name, check, False, None, bound, f"{detail}: raised {type(got).__name__}: {got}")
    diff = float((got.double() - want).abs().max())
    if not math.isfinite(diff):
        return KernelCheckResult(name, check, False, None, bound, f"{detail}: the kernel's output is not finite")
    return KernelCheckResult(name, check, diff <= bound, diff, bound, detail)
