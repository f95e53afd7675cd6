"""Paged decode attention with split-KV (flash-decoding): the torch reference, on any device.

Layout (as vLLM lays it out): q [B, H, D]; k_pages and v_pages [num_pages, page_size, Hkv, D]; block_table
int [B, max_blocks] (each sequence's page ids, in order); seq_lens int [B] (tokens per sequence, >= 1).
Query head h reads KV head h // (H // Hkv). Scores are (q · k) · scale; everything is computed in fp32.

Split-KV cuts each sequence into `num_splits` runs of whole pages (`split_token_ranges`). Each split gives a
partial output normalised by its own softmax sum, o_s, and its log-sum-exp, lse_s (-inf and o_s = 0 when the
split is empty). `combine_splits` merges them strictly in split order:

    m = max_s lse_s;   out = (Σ_s exp(lse_s − m) · o_s) / (Σ_s exp(lse_s − m))

Every partial's numerator and denominator come out of one reduction (the softmax sum is an extra all-ones
column of V), so V all ones gives exactly 1.0, as it does in the CuTe kernel.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

FLOAT_DTYPES = (torch.float32, torch.bfloat16, torch.float16)
INDEX_DTYPES = (torch.int32, torch.int64)


class PagedAttentionError(ValueError):
    """A shape, dtype or value paged attention cannot take; the message names the argument and what to do."""


@dataclass(frozen=True)
class PagedDims:
    """The sizes a call works with, read from (and checked against) its arguments."""

    batch: int
    heads: int
    kv_heads: int
    head_dim: int
    num_pages: int
    page_size: int
    max_blocks: int

    @property
    def group(self) -> int:
        """Query heads per KV head (H // Hkv)."""
        return self.heads // self.kv_heads


def check_paged_shapes(
    q: torch.Tensor, k_pages: torch.Tensor, v_pages: torch.Tensor, block_table: torch.Tensor, seq_lens: torch.Tensor
) -> PagedDims:
    """Check shapes, dtypes and devices (no device sync) and return the sizes, or raise PagedAttentionError."""
    if q.dim() != 3:
        raise PagedAttentionError(f"q must be [batch, heads, head_dim], got shape {tuple(q.shape)}")
    if k_pages.dim() != 4:
        raise PagedAttentionError(
            f"k_pages must be [num_pages, page_size, kv_heads, head_dim], got shape {tuple(k_pages.shape)}"
        )
    if v_pages.shape != k_pages.shape:
        raise PagedAttentionError(
            f"v_pages must have k_pages' shape {tuple(k_pages.shape)}, got {tuple(v_pages.shape)}"
        )
    batch, heads, head_dim = q.shape
    num_pages, page_size, kv_heads, kv_dim = k_pages.shape
    if kv_dim != head_dim:
        raise PagedAttentionError(f"k_pages head_dim is {kv_dim} but q's is {head_dim}; they must match")
    if min(batch, heads, head_dim, num_pages, page_size, kv_heads) < 1:
        raise PagedAttentionError(f"every size must be positive: q {tuple(q.shape)}, k_pages {tuple(k_pages.shape)}")
    if heads % kv_heads:
        raise PagedAttentionError(
            f"q has {heads} heads, not a multiple of the {kv_heads} kv_heads of k_pages; use H = n · Hkv"
        )
    for name, t in (("q", q), ("k_pages", k_pages), ("v_pages", v_pages)):
        if t.dtype not in FLOAT_DTYPES:
            raise PagedAttentionError(f"{name} must be float32, bfloat16 or float16, got {t.dtype}")
    if block_table.dim() != 2 or block_table.shape[0] != batch or block_table.shape[1] < 1:
        raise PagedAttentionError(
            f"block_table must be [batch={batch}, max_blocks >= 1], got shape {tuple(block_table.shape)}"
        )
    if seq_lens.shape != (batch,):
        raise PagedAttentionError(f"seq_lens must be [batch={batch}], got shape {tuple(seq_lens.shape)}")
    for name, t in (("block_table", block_table), ("seq_lens", seq_lens)):
        if t.dtype not in INDEX_DTYPES:
            raise PagedAttentionError(f"{name} must be int32 or int64, got {t.dtype}")
    for name, t in (("k_pages", k_pages), ("v_pages", v_pages), ("block_table", block_table), ("seq_lens", seq_lens)):
        if t.device != q.device:
            raise PagedAttentionError(f"{name} is on {t.device} but q is on {q.device}; put them on one device")
    return PagedDims(batch, heads, kv_heads, head_dim, num_pages, page_size, block_table.shape[1])


def check_paged_values(dims: PagedDims, block_table: torch.Tensor, seq_lens: torch.Tensor) -> None:
    """Check seq_lens in [1, max_blocks·page_size] and every used page id in [0, num_pages) (syncs the device)."""
    capacity = dims.max_blocks * dims.page_size
    bad = ((seq_lens < 1) | (seq_lens > capacity)).nonzero()
    if bad.numel():
        b = int(bad[0, 0])
        raise PagedAttentionError(
            f"seq_lens[{b}] = {int(seq_lens[b])} is outside [1, {capacity}] (max_blocks {dims.max_blocks} · "
            f"page_size {dims.page_size}); give every sequence at least one token and enough blocks"
        )
    used = _used_blocks(seq_lens, dims)
    out_of_range = used & ((block_table < 0) | (block_table >= dims.num_pages))
    if out_of_range.any():
        b, j = (int(i) for i in out_of_range.nonzero()[0])
        raise PagedAttentionError(
            f"block_table[{b}, {j}] = {int(block_table[b, j])} is not a page id in [0, {dims.num_pages}); "
            f"fix the block table or pass the pages it refers to"
        )


def ceil_div(a: int | torch.Tensor, b: int) -> int | torch.Tensor:
    """ceil(a / b) for non-negative ints or integer tensors a and a positive int b."""
    return (a + b - 1) // b


def check_num_splits(num_splits: int) -> int:
    """`num_splits` as a positive int, or raise PagedAttentionError."""
    if isinstance(num_splits, bool) or not isinstance(num_splits, int) or num_splits < 1:
        raise PagedAttentionError(f"num_splits must be a positive integer, got {num_splits!r}")
    return num_splits


def split_token_ranges(seq_len: int, num_splits: int, page_size: int) -> list[tuple[int, int]]:
    """Token range [t0, t1) of each split, on page boundaries.

    pages_per_split = ceil(ceil(seq_len / page_size) / num_splits); split s covers pages [s·pps, (s+1)·pps)
    clipped to the sequence, so splits past the end are empty (t0 == t1 == seq_len).
    """
    check_num_splits(num_splits)
    if seq_len < 0 or page_size < 1:
        raise PagedAttentionError(f"need seq_len >= 0 and page_size >= 1, got seq_len={seq_len}, page_size={page_size}")
    pages_per_split = ceil_div(ceil_div(seq_len, page_size), num_splits)
    tokens_per_split = pages_per_split * page_size
    return [(min(s * tokens_per_split, seq_len), min((s + 1) * tokens_per_split, seq_len)) for s in range(num_splits)]


def paged_attention_reference(
    q: torch.Tensor,
    k_pages: torch.Tensor,
    v_pages: torch.Tensor,
    block_table: torch.Tensor,
    seq_lens: torch.Tensor,
    scale: float,
) -> torch.Tensor:
    """Plain fp32 softmax attention over each sequence's gathered pages, fp32 [B, H, D]: the tolerance reference."""
    dims = check_paged_shapes(q, k_pages, v_pages, block_table, seq_lens)
    check_paged_values(dims, block_table, seq_lens)
    out = torch.empty(dims.batch, dims.heads, dims.head_dim, dtype=torch.float32, device=q.device)
    for b in range(dims.batch):
        length = int(seq_lens[b])
        pages = block_table[b, : ceil_div(length, dims.page_size)].long()
        k, v = (p[pages].reshape(-1, dims.kv_heads, dims.head_dim)[:length].float() for p in (k_pages, v_pages))
        qb = q[b].float().view(dims.kv_heads, dims.group, dims.head_dim)
        weights = torch.softmax(torch.einsum("kgd,tkd->kgt", qb, k) * scale, dim=-1)
        out[b] = torch.einsum("kgt,tkd->kgd", weights, v).reshape(dims.heads, dims.head_dim)
    return out


def split_kv_partials(
    q: torch.Tensor,
    k_pages: torch.Tensor,
    v_pages: torch.Tensor,
    block_table: torch.Tensor,
    seq_lens: torch.Tensor,
    scale: float,
    num_splits: int,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Per (b, h, split): output normalised by the split's own softmax sum (fp32 [B, H, S, D]) and its lse [B, H, S].

    An empty split has lse -inf and output 0. Vectorised over the batch: sequences are padded to the longest
    one's pages and masked; weights are summed per page (one matmul per KV head), then pages into their split.
    """
    dims = check_paged_shapes(q, k_pages, v_pages, block_table, seq_lens)
    check_paged_values(dims, block_table, seq_lens)
    splits = check_num_splits(num_splits)
    batch, kv_heads, group, head_dim, page_size = dims.batch, dims.kv_heads, dims.group, dims.head_dim, dims.page_size
    lens = seq_lens.to(torch.int64)
    blocks = ceil_div(int(lens.max()), page_size)
    used = _used_blocks(seq_lens, dims)[:, :blocks]  # [B, nb]
    pages = torch.where(used, block_table[:, :blocks], 0).long()  # unused entries may hold anything: read page 0
    valid = torch.arange(blocks * page_size, device=q.device) < lens[:, None]  # [B, T]

    k = _gathered(k_pages, pages).float().view(batch, -1, kv_heads, head_dim)  # [B, T, Hkv, D]
    qf = q.float().view(batch, kv_heads, group, head_dim)
    scores = torch.stack([qf[:, h] @ k[:, :, h].transpose(1, 2) for h in range(kv_heads)], dim=1) * scale
    scores = scores.masked_fill_(~valid[:, None, None], float("-inf")).view(batch, kv_heads, group, blocks, page_size)

    pages_per_split = ceil_div(ceil_div(lens, page_size), splits)  # [B]
    split_of_block = torch.arange(blocks, device=q.device) // pages_per_split[:, None]  # [B, nb]
    in_split = used[:, None, :] & (split_of_block[:, None, :] == torch.arange(splits, device=q.device)[:, None])
    block_max = scores.amax(-1)  # [B, Hkv, G, nb]
    split_max = block_max[:, :, :, None].masked_fill(~in_split[:, None, None], float("-inf")).amax(-1)  # [B,Hkv,G,S]
    index = split_of_block.clamp(max=splits - 1)[:, None, None].expand(-1, kv_heads, group, -1)
    shift = split_max.gather(3, index)  # [B, Hkv, G, nb]: the max of the split each block belongs to
    weights = torch.exp(scores - torch.where(torch.isfinite(shift), shift, 0.0)[..., None])  # masked: exp(-inf) = 0

    v = _values_with_ones(v_pages, pages, valid, head_dim)  # [B, nb, ps, Hkv, D + 1]; the last column is 1
    block_sums = torch.stack(
        [weights[:, h].transpose(1, 2) @ v[:, :, :, h] for h in range(kv_heads)], dim=1
    )  # [B, Hkv, nb, G, D + 1]: Σ weight · v per block, and Σ weight in the same reduction
    split_sums = torch.einsum("bsn,bkngd->bkgsd", in_split.float(), block_sums)  # [B, Hkv, G, S, D + 1]
    total = split_sums[..., head_dim]
    nonempty = total > 0
    partial = torch.where(nonempty[..., None], split_sums[..., :head_dim] / total[..., None], 0.0)
    lse = torch.where(nonempty, split_max + torch.log(total), float("-inf"))
    return partial.reshape(batch, dims.heads, splits, head_dim), lse.reshape(batch, dims.heads, splits)


def combine_splits(partial: torch.Tensor, lse: torch.Tensor) -> torch.Tensor:
    """Flash-decoding combine, strictly in split order: fp32 [B, H, D] from partial [B, H, S, D] and lse [B, H, S].

    m = max_s lse_s; out = (Σ_s exp(lse_s − m)·o_s) / (Σ_s exp(lse_s − m)), sums taken s = 0, 1, ... in order;
    empty splits (lse -inf, o 0) add 0. At least one split of every (b, h) must be non-empty.
    """
    if partial.dim() != 4 or lse.shape != partial.shape[:3]:
        raise PagedAttentionError(
            f"partial must be [B, H, S, D] and lse [B, H, S] with the same B, H, S; "
            f"got partial {tuple(partial.shape)} and lse {tuple(lse.shape)}"
        )
    partial, lse = partial.float(), lse.float()
    weights = torch.exp(lse - lse.amax(-1, keepdim=True))
    num = torch.zeros_like(partial[:, :, 0])
    den = torch.zeros_like(lse[:, :, 0])
    for s in range(partial.shape[2]):
        num = num + weights[:, :, s, None] * partial[:, :, s]
        den = den + weights[:, :, s]
    return num / den[..., None]


def split_kv_attention(
    q: torch.Tensor,
    k_pages: torch.Tensor,
    v_pages: torch.Tensor,
    block_table: torch.Tensor,
    seq_lens: torch.Tensor,
    scale: float,
    num_splits: int,
) -> torch.Tensor:
    """Paged decode attention by split-KV: combine_splits(split_kv_partials(...)), fp32 [B, H, D]."""
    return combine_splits(*split_kv_partials(q, k_pages, v_pages, block_table, seq_lens, scale, num_splits))


def _used_blocks(seq_lens: torch.Tensor, dims: PagedDims) -> torch.Tensor:
    """bool [B, max_blocks]: which block-table entries hold a sequence's tokens."""
    blocks_used = ceil_div(seq_lens.to(torch.int64), dims.page_size)
    return torch.arange(dims.max_blocks, device=seq_lens.device) < blocks_used[:, None]


def _gathered(pool: torch.Tensor, pages: torch.Tensor) -> torch.Tensor:
    """The pages' rows, [B, nb, page_size, Hkv, D] in the pool's dtype."""
    return pool.flatten(1).index_select(0, pages.flatten()).view(*pages.shape, *pool.shape[1:])


def _values_with_ones(v_pages: torch.Tensor, pages: torch.Tensor, valid: torch.Tensor, head_dim: int) -> torch.Tensor:
    """fp32 [B, nb, page_size, Hkv, D + 1]: the pages' V rows plus a column of ones; rows past each end are 0.

    Those rows get weight 0, but 0 · NaN is NaN, so stale values in them must not reach the sums: every row at or
    past its sequence's length (`valid` [B, nb·page_size] is False there) is zeroed, ones column included.
    """
    rows = _gathered(v_pages, pages)
    out = torch.empty(*rows.shape[:-1], head_dim + 1, dtype=torch.float32, device=rows.device)
    out[..., :head_dim] = rows
    out[..., head_dim] = 1.0
    return out.masked_fill_(~valid.view(*rows.shape[:3], 1, 1), 0.0)
