"""Paged decode attention with split-KV (flash-decoding) in the CuTe DSL; bf16 q/K/V, fp32 accumulators and output.

Arguments as in `engine.kernels.paged_attention`: q [B, H, D], k_pages/v_pages [num_pages, page_size, Hkv, D],
block_table int32 [B, max_blocks], seq_lens int32 [B]. One compile serves every batch size, pool size and
block-table width (those three are dynamic); heads, kv_heads, head_dim, page_size and num_splits are baked in.

Grid (num_splits, Hkv, B), 128 threads: one CTA per (split, KV head, sequence) serves the G = H / Hkv query
heads that read that KV head, so each K/V row is read once. The split covers the pages `split_token_ranges`
gives it; for each page the CTA
1. copies the page's valid K and V rows of its KV head to shared memory, 128 bits (8 bf16) per copy;
2. computes the G × page_size scores (q · k) · scale, one thread per (head, token), over d in order;
3. per head (one thread each): the new running max m, corr = exp(m_old − m), the weights exp(s − m) in
   token order, l = l·corr + Σ weights in token order;
4. per (head, d) (thread-owned fp32 accumulators): acc = acc·corr, then acc = fma(weight_t, v_t, acc) in token
   order, the same operations as l, so V all ones gives acc == l exactly.
It then writes acc / l to `partial[b, h, split]` and m + log(l) to `lse[b, h, split]` (0 and -inf for an empty
split), fences, and arrives on the acq_rel counter of (b, KV head). The last CTA to arrive combines the splits
strictly in split order (as `combine_splits` does) into `out[b, h]` and resets the counter to 0. No float
atomics: repeated launches give the same bits.

Shared memory: K and V pages (2 · page_size · D bf16), q (G · D fp32), scores (G · page_size), per-head m, l,
corr, combine weights (G · num_splits) and denominators. Workspace (cached per configuration, device and batch
size): partial fp32 [B, H, S, D], lse fp32 [B, H, S], counter int32 [B, Hkv] (zero, left at zero).
seq_lens and block_table values are not checked on this path (that would sync the device): every seq_len must be
>= 1 and every used page id valid; seq_lens past the block table's capacity are clipped to it.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import torch

from engine.kernels.cute.build import (
    CompileReport,
    compile_kept,
    current_stream,
    cute_modules,
    fake_stream,
    fake_tensor,
    require_cuda,
)
from engine.kernels.paged_attention import PagedAttentionError, ceil_div, check_num_splits, check_paged_shapes

THREADS = 128
VEC = 8  # bf16 values per 128-bit load
SMEM_LIMIT = 48 * 1024  # without an opt-in, a CTA gets at most 48 KiB of shared memory


@dataclass(frozen=True)
class PagedAttentionShape:
    """One compiled configuration of the kernel."""

    heads: int
    kv_heads: int
    head_dim: int
    page_size: int
    num_splits: int

    @property
    def group(self) -> int:
        """Query heads per KV head, served by one CTA."""
        return self.heads // self.kv_heads

    @property
    def items_per_thread(self) -> int:
        """(head, d) accumulators each thread owns: ceil(G · D / THREADS)."""
        return ceil_div(self.group * self.head_dim, THREADS)

    @property
    def smem_bytes(self) -> int:
        """Shared memory per CTA: K and V pages (bf16), q, scores, combine weights, 4 per-head values, a flag."""
        g, d, ps = self.group, self.head_dim, self.page_size
        sizes = [2 * ps * d, 2 * ps * d, 4 * g * d, 4 * g * ps, 4 * g * self.num_splits, *[4 * g] * 4, 4]
        return sum(ceil_div(size, 16) * 16 for size in sizes)  # each allocation is 16-byte aligned


def paged_attention_shape(
    heads: int, kv_heads: int, head_dim: int, page_size: int, num_splits: int
) -> PagedAttentionShape:
    """Validate a configuration: H a multiple of Hkv, D a multiple of 8, G <= 128, shared memory <= 48 KiB."""
    splits = check_num_splits(num_splits)
    if min(heads, kv_heads, head_dim, page_size) < 1 or heads % kv_heads:
        raise PagedAttentionError(
            f"heads={heads} must be a positive multiple of kv_heads={kv_heads}, and head_dim={head_dim}, "
            f"page_size={page_size} positive"
        )
    if head_dim % VEC:
        raise PagedAttentionError(
            f"head_dim={head_dim} must be a multiple of {VEC}: the kernel reads K/V rows 8 bf16 (128 bits) at a time"
        )
    shape = PagedAttentionShape(heads, kv_heads, head_dim, page_size, splits)
    if shape.group > THREADS:
        raise PagedAttentionError(f"heads / kv_heads = {shape.group} must be at most {THREADS} (one thread per head)")
    if shape.smem_bytes > SMEM_LIMIT:
        raise PagedAttentionError(
            f"page_size={page_size}, head_dim={head_dim}, heads/kv_heads={shape.group}, num_splits={splits} need "
            f"{shape.smem_bytes} B of shared memory per CTA, over {SMEM_LIMIT}; use smaller pages or fewer splits"
        )
    return shape


@cache
def _kernel_class() -> type:
    """Define the kernel class (its decorators need `cutlass`, so this runs on first use)."""
    cutlass, cute = cute_modules()
    neg_inf = float("-inf")

    class PagedAttentionKernel:
        """Split-KV paged decode attention; the configuration is baked in as compile-time constants."""

        def __init__(self, shape: PagedAttentionShape) -> None:
            self.kv_heads = shape.kv_heads
            self.group = shape.group
            self.head_dim = shape.head_dim
            self.page_size = shape.page_size
            self.splits = shape.num_splits
            self.chunks = shape.head_dim // VEC
            self.items = shape.items_per_thread

        @cute.jit
        def __call__(self, q, k_pages, v_pages, block_table, seq_lens, scale, partial, lse, counter, out, stream):
            """Host side: build the 128-bit copy atom and launch one CTA per (split, KV head, sequence)."""
            atom = cute.make_copy_atom(cute.nvgpu.CopyUniversalOp(), cutlass.BFloat16, num_bits_per_copy=128)
            self.kernel(q, k_pages, v_pages, block_table, seq_lens, scale, partial, lse, counter, out, atom).launch(
                grid=(self.splits, self.kv_heads, q.shape[0]), block=(THREADS, 1, 1), stream=stream
            )

        @cute.kernel
        def kernel(self, q, k_pages, v_pages, block_table, seq_lens, scale, partial, lse, counter, out, atom):
            """Device side: online softmax over the split's pages, then the arrival counter and split-order combine."""
            tidx, _, _ = cute.arch.thread_idx()
            split, kvh, b = cute.arch.block_idx()
            g_heads, d_dim, ps, splits = self.group, self.head_dim, self.page_size, self.splits
            smem = cutlass.memory.SmemAllocator()
            k_rows = smem.allocate_tensor(cutlass.BFloat16, cute.make_layout((ps, d_dim), stride=(d_dim, 1)), 16)
            v_rows = smem.allocate_tensor(cutlass.BFloat16, cute.make_layout((ps, d_dim), stride=(d_dim, 1)), 16)
            q_s = smem.allocate_tensor(cutlass.Float32, cute.make_layout((g_heads, d_dim), stride=(d_dim, 1)), 16)
            p_s = smem.allocate_tensor(cutlass.Float32, cute.make_layout((g_heads, ps), stride=(ps, 1)), 16)
            w_s = smem.allocate_tensor(cutlass.Float32, cute.make_layout((g_heads, splits), stride=(splits, 1)), 16)
            m_s = smem.allocate_tensor(cutlass.Float32, cute.make_layout(g_heads), 16)
            l_s = smem.allocate_tensor(cutlass.Float32, cute.make_layout(g_heads), 16)
            corr_s = smem.allocate_tensor(cutlass.Float32, cute.make_layout(g_heads), 16)
            den_s = smem.allocate_tensor(cutlass.Float32, cute.make_layout(g_heads), 16)
            last = smem.allocate_tensor(cutlass.Int32, cute.make_layout(1), 4)
            acc = cute.make_rmem_tensor((self.items,), cutlass.Float32)
            acc.fill(0.0)

            h0 = kvh * g_heads
            n_tokens = cutlass.min(seq_lens[b], block_table.shape[1] * ps)
            n_blocks = (n_tokens + (ps - 1)) // ps
            per_split = (n_blocks + (splits - 1)) // splits
            first = cutlass.min(split * per_split, n_blocks)
            end = cutlass.min(first + per_split, n_blocks)

            for i in cutlass.range(tidx, g_heads * d_dim, THREADS):
                q_s[i // d_dim, i % d_dim] = q[b, h0 + i // d_dim, i % d_dim].to(cutlass.Float32)
            if tidx < g_heads:
                m_s[tidx] = cutlass.Float32(neg_inf)
                l_s[tidx] = cutlass.Float32(0.0)
            cute.arch.sync_threads()

            for blk in cutlass.range(first, end):
                page = cutlass.Int64(block_table[b, blk])  # 64-bit: page · row stride can pass 2^31
                n_valid = cutlass.min(n_tokens - blk * ps, ps)
                for i in cutlass.range(tidx, n_valid * self.chunks, THREADS):  # 1. K and V rows, 128 bits a copy
                    t = i // self.chunks
                    c = i % self.chunks
                    tile = (VEC,)
                    cute.copy(atom, cute.local_tile(k_pages[page, t, kvh, None], tile, (c,)),
                              cute.local_tile(k_rows[t, None], tile, (c,)))  # fmt: skip
                    cute.copy(atom, cute.local_tile(v_pages[page, t, kvh, None], tile, (c,)),
                              cute.local_tile(v_rows[t, None], tile, (c,)))  # fmt: skip
                cute.arch.sync_threads()

                for i in cutlass.range(tidx, g_heads * n_valid, THREADS):  # 2. scores, d in order
                    g = i // n_valid
                    t = i % n_valid
                    dot = cutlass.Float32(0.0)
                    for d in cutlass.range(d_dim, unroll=8):
                        dot = cute.math.fma(q_s[g, d], k_rows[t, d].to(cutlass.Float32), dot)
                    p_s[g, t] = dot * scale
                cute.arch.sync_threads()

                if tidx < g_heads:  # 3. running max, rescale factor, weights and their sum in token order
                    m_old = m_s[tidx]
                    m_new = m_old
                    for t in cutlass.range(n_valid):
                        m_new = cutlass.max(m_new, p_s[tidx, t])
                    corr = cute.math.exp(m_old - m_new)
                    total = l_s[tidx] * corr
                    for t in cutlass.range(n_valid):
                        weight = cute.math.exp(p_s[tidx, t] - m_new)
                        p_s[tidx, t] = weight
                        total = total + weight
                    m_s[tidx] = m_new
                    l_s[tidx] = total
                    corr_s[tidx] = corr
                cute.arch.sync_threads()

                for j in cutlass.range_constexpr(self.items):  # 4. acc = acc·corr + Σ weight·v in token order
                    item = tidx + j * THREADS
                    if item < g_heads * d_dim:
                        g = item // d_dim
                        d = item % d_dim
                        a = acc[j] * corr_s[g]
                        for t in cutlass.range(n_valid):
                            a = cute.math.fma(p_s[g, t], v_rows[t, d].to(cutlass.Float32), a)
                        acc[j] = a
                cute.arch.sync_threads()

            for j in cutlass.range_constexpr(self.items):  # this split's partial output and lse
                item = tidx + j * THREADS
                if item < g_heads * d_dim:
                    g = item // d_dim
                    total = l_s[g]
                    partial[b, h0 + g, split, item % d_dim] = cutlass.select_(
                        total > 0, acc[j] / total, cutlass.Float32(0.0)
                    )
            if tidx < g_heads:
                total = l_s[tidx]
                lse[b, h0 + tidx, split] = cutlass.select_(
                    total > 0, m_s[tidx] + cute.math.log(total), cutlass.Float32(neg_inf)
                )

            cute.arch.fence_acq_rel_gpu()
            cute.arch.sync_threads()
            if tidx == 0:
                slot = counter.iterator + (b * self.kv_heads + kvh)
                arrived = cute.arch.atomic_add(slot, cutlass.Int32(1), sem="acq_rel", scope="gpu")
                last[0] = cutlass.select_(arrived == splits - 1, cutlass.Int32(1), cutlass.Int32(0))
            cute.arch.sync_threads()

            if last[0] == 1:  # the last CTA of (b, KV head) combines the splits in split order
                cute.arch.fence_acq_rel_gpu()
                if tidx < g_heads:
                    h = h0 + tidx
                    m = lse[b, h, 0]
                    for s in cutlass.range_constexpr(1, splits):
                        m = cutlass.max(m, lse[b, h, s])
                    den = cutlass.Float32(0.0)
                    for s in cutlass.range_constexpr(splits):
                        weight = cute.math.exp(lse[b, h, s] - m)
                        w_s[tidx, s] = weight
                        den = den + weight
                    den_s[tidx] = den
                cute.arch.sync_threads()
                for j in cutlass.range_constexpr(self.items):
                    item = tidx + j * THREADS
                    if item < g_heads * d_dim:
                        g = item // d_dim
                        d = item % d_dim
                        num = cutlass.Float32(0.0)
                        for s in cutlass.range_constexpr(splits):
                            num = cute.math.fma(w_s[g, s], partial[b, h0 + g, s, d], num)
                        out[b, h0 + g, d] = num / den_s[g]
                if tidx == 0:
                    counter[b, kvh] = cutlass.Int32(0)

    return PagedAttentionKernel


# The tensor arguments in order (scale comes after seq_lens, the stream last) and which of their modes are
# dynamic: batch everywhere, num_pages in the pools, max_blocks in the block table. `_host_args` compiles with
# these as symbols and `paged_attention` marks its tensors the same way, so the two always agree.
TENSOR_ARGS = ("q", "k_pages", "v_pages", "block_table", "seq_lens", "partial", "lse", "counter", "out")
DYNAMIC_MODES = {name: (0, 1) if name == "block_table" else (0,) for name in TENSOR_ARGS}


def _tensor_specs(shape: PagedAttentionShape) -> dict[str, tuple[Any, tuple[int, ...]]]:
    """(CuTe dtype, dims) of every tensor argument; the dims in DYNAMIC_MODES are placeholders (0)."""
    cutlass, _ = cute_modules()
    h, hkv, d, s, ps = shape.heads, shape.kv_heads, shape.head_dim, shape.num_splits, shape.page_size
    bf16, f32, i32 = cutlass.BFloat16, cutlass.Float32, cutlass.Int32
    return {
        "q": (bf16, (0, h, d)),
        "k_pages": (bf16, (0, ps, hkv, d)),
        "v_pages": (bf16, (0, ps, hkv, d)),
        "block_table": (i32, (0, 0)),
        "seq_lens": (i32, (0,)),
        "partial": (f32, (0, h, s, d)),
        "lse": (f32, (0, h, s)),
        "counter": (i32, (0, hkv)),
        "out": (f32, (0, h, d)),
    }


def _host_args(shape: PagedAttentionShape) -> tuple:
    """Fake arguments in the kernel's order; one symbol per dynamic mode, as each runtime tensor carries its sizes."""
    cutlass, cute = cute_modules()
    fakes = []
    for name, (dtype, dims) in _tensor_specs(shape).items():
        modes = DYNAMIC_MODES[name]
        fakes.append(fake_tensor(dtype, tuple(cute.sym_int32() if i in modes else n for i, n in enumerate(dims))))
    return (*fakes[:5], cutlass.Float32(1.0), *fakes[5:], fake_stream())


def compile_paged_attention(
    heads: int, kv_heads: int, head_dim: int, page_size: int, num_splits: int, arch: str, dump_dir: Path
) -> CompileReport:
    """Compile (no GPU needed) for `arch`, e.g. "sm_121a", keeping PTX and cubin in `dump_dir` (one dir per variant)."""
    shape = paged_attention_shape(heads, kv_heads, head_dim, page_size, num_splits)
    variant = f"H={heads} Hkv={kv_heads} D={head_dim} page={page_size} splits={shape.num_splits}"
    return compile_kept(_kernel_class()(shape), _host_args(shape), kernel="paged_decode_attention",
                        variant=variant, arch=arch, dump_dir=dump_dir)  # fmt: skip


@cache
def _compiled(shape: PagedAttentionShape, device: torch.device) -> Any:
    """Compile once per configuration and device, for the GPU the DSL detects; every batch size shares it."""
    _, cute = cute_modules()
    return cute.compile(_kernel_class()(shape), *_host_args(shape))


@dataclass(frozen=True)
class _Workspace:
    """Split partials, their lse and the per-(sequence, KV head) arrival counters for one batch size."""

    partial: torch.Tensor
    lse: torch.Tensor
    counter: torch.Tensor


@cache
def _workspace(shape: PagedAttentionShape, device: torch.device, batch: int) -> _Workspace:
    """Allocate once per configuration, device and batch size; counters start at 0 and every launch leaves them at 0."""
    h, s, d = shape.heads, shape.num_splits, shape.head_dim
    return _Workspace(
        torch.empty(batch, h, s, d, dtype=torch.float32, device=device),
        torch.empty(batch, h, s, dtype=torch.float32, device=device),
        torch.zeros(batch, shape.kv_heads, dtype=torch.int32, device=device),
    )


def runtime_tensor(t: torch.Tensor, name: str) -> Any:
    """`t` as a CuTe tensor with argument `name`'s DYNAMIC_MODES marked dynamic, as the kernel was compiled."""
    from cutlass.cute.runtime import from_dlpack

    ct = from_dlpack(t, assumed_align=16)
    for mode in DYNAMIC_MODES[name]:
        ct = ct.mark_compact_shape_dynamic(mode=mode, stride_order=t.dim_order())
    return ct


def paged_attention(
    q: torch.Tensor,
    k_pages: torch.Tensor,
    v_pages: torch.Tensor,
    block_table: torch.Tensor,
    seq_lens: torch.Tensor,
    scale: float,
    num_splits: int,
) -> torch.Tensor:
    """Paged split-KV decode attention on CUDA: bf16 q [B, H, D], K/V pages; fp32 [B, H, D].

    Launches on the current CUDA stream. The workspace is shared per configuration and batch size, so calls
    with the same configuration must not run concurrently on different streams.
    """
    require_cuda("paged_attention", q, k_pages, v_pages, block_table, seq_lens)
    cutlass, _ = cute_modules()
    dims = check_paged_shapes(q, k_pages, v_pages, block_table, seq_lens)
    for name, t in (("q", q), ("k_pages", k_pages), ("v_pages", v_pages)):
        if t.dtype != torch.bfloat16:
            raise PagedAttentionError(f"{name} must be bfloat16 for the CuTe kernel, got {t.dtype}; convert it")
    shape = paged_attention_shape(dims.heads, dims.kv_heads, dims.head_dim, dims.page_size, num_splits)
    tensors = {
        "q": q.contiguous(),
        "k_pages": k_pages.contiguous(),
        "v_pages": v_pages.contiguous(),
        "block_table": block_table.to(torch.int32).contiguous(),
        "seq_lens": seq_lens.to(torch.int32).contiguous(),
    }
    for name, t in tensors.items():
        if t.data_ptr() % 16:
            raise PagedAttentionError(f"{name} does not start on a 16-byte boundary; pass a copy (.clone()) of it")
    device = q.device
    work = _workspace(shape, device, dims.batch)
    out = torch.empty(dims.batch, dims.heads, dims.head_dim, dtype=torch.float32, device=device)
    tensors.update(partial=work.partial, lse=work.lse, counter=work.counter, out=out)
    cute_args = [runtime_tensor(tensors[name], name) for name in TENSOR_ARGS]
    args = (*cute_args[:5], cutlass.Float32(scale), *cute_args[5:], current_stream(device))
    _compiled(shape, device)(*args)
    return out
