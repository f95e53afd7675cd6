"""Kernel inputs the engine's tests share."""

from __future__ import annotations

import torch

from engine.kernels import nvfp4
from engine.kernels.checks import nvfp4_exact_inputs


def order_sensitive_inputs(k: int, n: int, seed: int) -> tuple[torch.Tensor, nvfp4.Nvfp4Tensor, torch.Tensor]:
    """The engine's exact inputs with x rescaled by 2^-12..2^12 per element: every product stays exact in fp32,
    but the sums round, so a different summation order gives different bits (the plain inputs sum exactly)."""
    x, weight = nvfp4_exact_inputs(k, n, seed)
    gen = torch.Generator().manual_seed(seed)
    x = (x.float() * 2.0 ** torch.randint(-12, 13, (1, k), generator=gen)).to(torch.bfloat16)
    return x, weight.nvfp4, weight.dense
