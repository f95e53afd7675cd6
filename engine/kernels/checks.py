"""Correctness checks the engine runs on its kernels at start, reported in /debug/config `kernel_checks`.

W_O split-K GEMV, for the configured `wo_split` and the model's own shape:
- **bit-exact** against `reference_split_order` on inputs whose products and partial sums are exact
  in fp32 (small integers times powers of two), so any correct kernel gives identical bits and a
  wrong slot range or a dropped slot shows as a non-zero difference;
- **tolerance** against a float64 matmul on random inputs: max |diff| <= 64 · eps(fp32) · max_n Σ_k |x_k·w_kn|.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass

import torch

from engine.kernels.wo_split import reference_split_order

WoGemv = Callable[[torch.Tensor, torch.Tensor, int, int], torch.Tensor]
FP32_EPS = float(torch.finfo(torch.float32).eps)
TOLERANCE_ULPS = 64


@dataclass(frozen=True)
class KernelCheckResult:
    """One check: which kernel and variant, bit-exact or tolerance, the largest difference and the bound."""

    kernel: str
    check: str
    passed: bool
    max_abs: float
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


def check_wo_gemv(
    gemv: WoGemv, wo_split: int, num_kv_heads: int, k: int, n: int, device: torch.device | str = "cpu", seed: int = 0
) -> list[KernelCheckResult]:
    """Run the bit-exact and tolerance checks of `gemv` (the W_O kernel the model uses) for one variant."""
    name = f"wo_split_gemv[wo_split={wo_split}]"
    shape = f"K={k}, N={n}, kv_heads={num_kv_heads}"
    x, w = (t.to(device) for t in exact_inputs(k, n, seed))
    reference = reference_split_order(x, w, num_kv_heads, wo_split)
    exact_diff = float((gemv(x, w, num_kv_heads, wo_split).float() - reference).abs().max())
    gen = torch.Generator().manual_seed(seed + 1)
    xr = torch.randn(1, k, generator=gen).to(device)
    wr = (torch.randn(k, n, generator=gen) / k**0.5).to(device)
    want = xr.double() @ wr.double()
    got = gemv(xr, wr, num_kv_heads, wo_split).double()
    bound = TOLERANCE_ULPS * FP32_EPS * float((xr.double().abs() @ wr.double().abs()).max())
    tol_diff = float((got - want).abs().max())
    return [
        KernelCheckResult(name, "bit-exact", exact_diff == 0.0, exact_diff, 0.0, f"vs reference_split_order, {shape}"),
        KernelCheckResult(name, "tolerance", tol_diff <= bound, tol_diff, bound, f"vs float64 matmul, {shape}"),
    ]
