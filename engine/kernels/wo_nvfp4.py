"""W_O with NVFP4 weights as the model runs it: one weight object for both the torch path and the CuTe kernel.

The CuTe kernel (`engine/kernels/cute/wo_gemv.py`) reads NVFP4 bytes and bf16 activations. The torch path
computes the same function from the exact fp32 decode of the weights and bf16-rounded activations, with the
split-K slot structure of `wo_split_gemv`, so both paths see identical inputs and differ only in summation
order inside a slot.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch

from engine.kernels import nvfp4
from engine.kernels.wo_split import wo_split_gemv


@dataclass(frozen=True)
class WoWeight:
    """W_O [K, N] as NVFP4 [N, K] (what the GPU kernel reads) plus its exact fp32 decode [K, N]."""

    nvfp4: nvfp4.Nvfp4Tensor
    dense: torch.Tensor  # float32 [K, N] = dequantize(nvfp4).T, exact

    @property
    def k(self) -> int:
        """Input features (heads · head_dim)."""
        return self.dense.shape[0]

    @property
    def n(self) -> int:
        """Output features (hidden)."""
        return self.dense.shape[1]


WoKernel = Callable[[torch.Tensor, WoWeight, int, int], torch.Tensor]


def prepare_wo(w: torch.Tensor, device: torch.device | str = "cpu", global_scale: float | None = None) -> WoWeight:
    """Quantize a [K, N] projection to NVFP4 on `device`; `global_scale` defaults to amax / (6·448)."""
    t = nvfp4.quantize(w.detach().float().cpu().T.contiguous(), global_scale)
    on_device = nvfp4.Nvfp4Tensor(t.packed.to(device), t.scales.to(device), t.global_scale)
    return WoWeight(on_device, nvfp4.dequantize(t).T.contiguous().to(device))


def bf16_rounded(x: torch.Tensor) -> torch.Tensor:
    """x rounded to bf16 and back to fp32: the activations the GPU kernel reads."""
    return x.to(torch.bfloat16).float()


def wo_torch(x: torch.Tensor, weight: WoWeight, num_kv_heads: int, wo_split: int) -> torch.Tensor:
    """The torch W_O path: bf16-rounded x [M, K] times the decoded NVFP4 weight, split-K gathered in slot order."""
    return wo_split_gemv(bf16_rounded(x), weight.dense, num_kv_heads, wo_split)
