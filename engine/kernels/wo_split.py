"""Split-K attention output projection (W_O): per-slot partial sums gathered in slot order.

The GPU kernel launches one CTA per slot: `num_kv_heads * wo_split` slots, slot = by * wo_split + bx,
where `by` is the KV head and `bx` the split within that head's K range. Each slot writes a partial
sum; the partials are then added in slot order. Changing `wo_split` changes the floating-point
summation order, so arms with different `CUTE_WO_SPLIT` values compute genuinely different bits.
"""

from __future__ import annotations

import torch

from engine.kernels.wo_split_values import WoSplitError, check_wo_split


def slot_bounds(k: int, num_kv_heads: int, wo_split: int) -> list[tuple[int, int]]:
    """K range [k0, k1) of every slot, in slot order.

    With Kh = K / num_kv_heads, slot s has by = s // wo_split, bx = s % wo_split and covers
    k0 = by*Kh + (Kh*bx)//wo_split up to k1 = by*Kh + (Kh*(bx+1))//wo_split.
    """
    wo_split = check_wo_split(wo_split)
    if num_kv_heads < 1 or k % num_kv_heads:
        raise WoSplitError(f"K={k} is not divisible by num_kv_heads={num_kv_heads}")
    kh = k // num_kv_heads
    bounds = []
    for slot in range(num_kv_heads * wo_split):
        by, bx = divmod(slot, wo_split)
        bounds.append((by * kh + (kh * bx) // wo_split, by * kh + (kh * (bx + 1)) // wo_split))
    return bounds


def wo_split_partials(x: torch.Tensor, w: torch.Tensor, num_kv_heads: int, wo_split: int) -> torch.Tensor:
    """Per-slot partial products: out[s] = x[:, k0:k1] @ w[k0:k1, :] for slot s, shape [slots, M, N]."""
    bounds = slot_bounds(x.shape[-1], num_kv_heads, wo_split)
    out = x.new_empty((len(bounds), x.shape[0], w.shape[1]))
    for slot, (k0, k1) in enumerate(bounds):
        torch.matmul(x[:, k0:k1], w[k0:k1, :], out=out[slot])
    return out


def gather_slots(partials: torch.Tensor) -> torch.Tensor:
    """Sum partials strictly in slot order: ((p0 + p1) + p2) + ... (the last-arriving CTA's gather)."""
    acc = partials[0].clone()
    for slot in range(1, partials.shape[0]):
        acc += partials[slot]
    return acc


def wo_split_gemv(x: torch.Tensor, w: torch.Tensor, num_kv_heads: int, wo_split: int) -> torch.Tensor:
    """W_O projection of `x` [M, K] by `w` [K, N] as a split-K sum gathered in slot order."""
    return gather_slots(wo_split_partials(x, w, num_kv_heads, wo_split))


def reference_split_order(x: torch.Tensor, w: torch.Tensor, num_kv_heads: int, wo_split: int) -> torch.Tensor:
    """The GPU kernel's summation order, literally: per slot a sequential fp32 sum over k0..k1, slots in order.

    x [M, K], w [K, N] -> [M, N] in float32. Slow (one vector add per k); for checks on small shapes.
    """
    xf, wf = x.float(), w.float()
    partials = []
    for k0, k1 in slot_bounds(x.shape[-1], num_kv_heads, wo_split):
        acc = torch.zeros(x.shape[0], w.shape[1], dtype=torch.float32, device=x.device)
        for k in range(k0, k1):
            acc = acc + xf[:, k : k + 1] * wf[k]
        partials.append(acc)
    out = partials[0]
    for partial in partials[1:]:
        out = out + partial
    return out


def reference_chained(x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    """The order of a kernel without split-K: one fp32 accumulator per output walking k = 0..K-1 in order.

    x [M, K], w [K, N] -> [M, N] in float32. It equals `reference_split_order` only when there is a single
    slot (one KV head and wo_split=1); with more slots the gather adds the slot partials instead.
    """
    xf, wf = x.float(), w.float()
    acc = torch.zeros(x.shape[0], w.shape[1], dtype=torch.float32, device=x.device)
    for k in range(x.shape[-1]):
        acc = acc + xf[:, k : k + 1] * wf[k]
    return acc
