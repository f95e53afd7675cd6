"""Which implementation of the decode kernels a model runs: the torch references or the CuTe DSL kernels.

Both sets take the same arguments, so the model does not care which it has:
- `wo(x [M, K], WoWeight, num_kv_heads, wo_split) -> [M, N]` — split-K W_O GEMV, NVFP4 weights;
- `attention(q [B, H, D], k_pages, v_pages, block_table, seq_lens, scale, num_splits) -> [B, H, D]` — paged
  split-KV decode attention;
- `mlp(x [M, H], w_gate [F, H], w_up [F, H], w_down [H, F], num_slots) -> [M, H]` — fused SwiGLU MLP.
The CuTe kernels are batch-1 GEMVs, so the CuTe set runs them once per row; they read bf16, which is why
the set names the dtype the model stores its KV pages and MLP weights in.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch

from engine.kernels.fused_mlp import fused_mlp_slots
from engine.kernels.paged_attention import split_kv_attention
from engine.kernels.wo_nvfp4 import WoKernel, WoWeight, wo_torch

KERNEL_CHOICES = ("auto", "torch", "cute")
AttentionKernel = Callable[..., torch.Tensor]
MlpKernel = Callable[[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, int], torch.Tensor]


@dataclass(frozen=True)
class ModelShapes:
    """The shapes a model runs its decode kernels at."""

    hidden: int
    heads: int
    kv_heads: int
    head_dim: int
    ffn: int
    wo_split: int
    mlp_slots: int
    kv_splits: int
    page_size: int


def _any_shape(_: ModelShapes) -> None:
    """The torch paths run every shape a valid model config has."""


@dataclass(frozen=True)
class DecodeKernels:
    """The decode kernels a model runs, by name ("torch" or "cute"), and the dtype their inputs are stored in."""

    name: str
    storage_dtype: torch.dtype
    wo: WoKernel
    attention: AttentionKernel
    mlp: MlpKernel
    check_shapes: Callable[[ModelShapes], None] = _any_shape  # raises a ValueError naming what it cannot run

    def with_wo(self, wo: WoKernel) -> DecodeKernels:
        """The same set with another W_O kernel (the `wo_drop_last_slot` fault rehearses a broken one)."""
        return DecodeKernels(self.name, self.storage_dtype, wo, self.attention, self.mlp, self.check_shapes)


TORCH_KERNELS = DecodeKernels("torch", torch.float32, wo_torch, split_kv_attention, fused_mlp_slots)


def cute_kernels() -> DecodeKernels:
    """The CuTe DSL set; raises CuteUnavailableError when the DSL is not installed or no GPU is present."""
    from engine.kernels.cute.build import cute_modules, require_cuda
    from engine.kernels.cute.fused_mlp import fused_mlp
    from engine.kernels.cute.paged_attention import paged_attention
    from engine.kernels.cute.wo_gemv import wo_gemv

    cute_modules()
    require_cuda("the CuTe kernels")

    def wo(x: torch.Tensor, weight: WoWeight, num_kv_heads: int, wo_split: int) -> torch.Tensor:
        t = weight.nvfp4
        rows = x.to(torch.bfloat16)
        return torch.stack([wo_gemv(r, t.packed, t.scales, t.global_scale, num_kv_heads, wo_split) for r in rows])

    def attention(q, k_pages, v_pages, block_table, seq_lens, scale, num_splits):
        return paged_attention(q.to(torch.bfloat16), k_pages, v_pages, block_table, seq_lens, scale, num_splits)

    def mlp(x, w_gate, w_up, w_down, num_slots):
        rows = x.to(torch.bfloat16)
        return torch.stack([fused_mlp(r, w_gate, w_up, w_down, num_slots)[0] for r in rows])

    return DecodeKernels("cute", torch.bfloat16, wo, attention, mlp, cute_shape_check)


def cute_shape_check(m: ModelShapes) -> None:
    """Raise a ValueError naming the first of the three CuTe kernels that cannot run these shapes (no GPU needed)."""
    from engine.kernels.cute.fused_mlp import fused_mlp_shape
    from engine.kernels.cute.paged_attention import paged_attention_shape
    from engine.kernels.cute.wo_gemv import wo_gemv_shape

    wo_gemv_shape(m.heads * m.head_dim, m.hidden, m.kv_heads, m.wo_split)
    fused_mlp_shape(m.hidden, m.ffn, m.mlp_slots)
    paged_attention_shape(m.heads, m.kv_heads, m.head_dim, m.page_size, m.kv_splits)


def select_kernels(choice: str, device: torch.device) -> DecodeKernels:
    """`choice` "torch", "cute" (raises CuteUnavailableError where it cannot run) or "auto" (CuTe on CUDA if it can)."""
    if choice not in KERNEL_CHOICES:
        raise ValueError(f"kernels: {choice!r} is not one of {', '.join(KERNEL_CHOICES)}")
    if choice == "torch" or (choice == "auto" and device.type != "cuda"):
        return TORCH_KERNELS
    from engine.kernels.cute.build import CuteUnavailableError

    if choice == "cute":
        if device.type != "cuda":
            raise CuteUnavailableError(
                f"the CuTe kernels run on CUDA only; the model is on {device}: use --device cuda"
            )
        return cute_kernels()
    try:
        return cute_kernels()
    except CuteUnavailableError:
        return TORCH_KERNELS
