"""W_O split-K GEMV for decode batch 1 with NVFP4 weights, in the CuTe DSL.

    y[n] = sum_k x[k] * w[n, k]      x bf16 [K], w NVFP4 [N, K], y fp32 [N]

Slots are `num_kv_heads * wo_split` (slot = by * wo_split + bx, see `wo_split.slot_bounds`). Because every
slot's K range is a multiple of 16, all slots have the same length L = K / num_kv_heads / wo_split and slot s
covers [s*L, (s+1)*L). The grid is (ceil(N / 128), slots): CTA (rb, s) computes rows rb*128 .. rb*128+127 of
slot s, one row per thread, walking the row's range in k order with one fp32 FMA per element and reading 32 fp4
values per 128-bit load (16 per 64-bit load when L is an odd multiple of 16); it writes `partial[s, n]`. After a
gpu-scope fence every CTA arrives on its row block's atomic counter; the last of the block's `slots` CTAs sums
the block's partials in slot order into y and resets that counter to 0. This is the order
`wo_split.reference_split_order` computes, so the two agree bit for bit whenever x[k] * w[n, k] is exact in fp32
(for example with a power-of-two global scale).

Inside the kernel the packed weights are read as int32 words (8 fp4 values, element j in bits 4j..4j+3) and the
E4M3 block scales as int16 pairs (one pair per 32 values; single bytes with 64-bit loads), both decoded with
integer arithmetic, which works on sm_90a as well as on sm_100+/sm_12x. E4M3 NaN codes are not handled (NVFP4
scales are finite). Loads are not coalesced across a warp (each lane reads its own row); the row-block grid is
there to give every SM work.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import torch

from engine.kernels.cute.build import (
    CompileReport,
    SlotLauncher,
    compile_kept,
    current_stream,
    cute_modules,
    fake_stream,
    fake_tensor,
    require_cuda,
)
from engine.kernels.wo_split_values import WoSplitError, check_wo_split

THREADS = 128  # direct kernel: one output row per thread
BLOCK = 16  # NVFP4 values per E4M3 scale: a slot must hold whole blocks
STAGED_ROWS = 32  # staged kernel: one warp per CTA, one output row per lane
STAGED_TILES = (256, 128, 64)  # staged kernel: K values per row and tile, the largest that divides the slot
STAGED_MIN_TILE = STAGED_TILES[-1]
TILE_PAD_WORDS = 4  # a tile row is tile/8 + 4 int32 words: stride = 4 (mod 8) words, conflict-free 128-bit reads
E2M1_SHIFT = 14  # the decoded f16 weight is e2m1 * scale * 2^-14; x is staged as x * global_scale * 2^14


@dataclass(frozen=True)
class WoGemvShape:
    """One compiled configuration of the kernel."""

    k: int
    n: int
    num_kv_heads: int
    wo_split: int

    @property
    def slots(self) -> int:
        """CTAs per launch: one per (KV head, split)."""
        return self.num_kv_heads * self.wo_split

    @property
    def slot_len(self) -> int:
        """K values per slot: K / num_kv_heads / wo_split."""
        return self.k // self.slots

    @property
    def values_per_load(self) -> int:
        """fp4 values per global load: 32 (128 bits) when every slot holds a multiple of 32, else 16 (64 bits)."""
        return 32 if self.slot_len % 32 == 0 else 16

    @property
    def staged(self) -> bool:
        """The staged kernel runs when every slot holds a multiple of 64 values; else the direct kernel."""
        return self.slot_len % STAGED_MIN_TILE == 0

    @property
    def rows_per_cta(self) -> int:
        """Output rows (= threads) per CTA: 32 (one warp) staged, 128 direct."""
        return STAGED_ROWS if self.staged else THREADS

    @property
    def tile_values(self) -> int:
        """Staged kernel: K values per row in one shared-memory tile, the largest of 256/128/64 dividing the slot."""
        return next(c for c in STAGED_TILES if self.slot_len % c == 0) if self.staged else 0

    @property
    def scale_view_values(self) -> int:
        """K values per element of the scales view the kernel reads: int32 (4 scales) staged, else int16 / uint8."""
        return 4 * BLOCK if self.staged else self.values_per_load

    @property
    def row_blocks(self) -> int:
        """CTAs per slot: ceil(N / rows_per_cta)."""
        return -(-self.n // self.rows_per_cta)


def wo_gemv_shape(k: int, n: int, num_kv_heads: int, wo_split: int) -> WoGemvShape:
    """Validate a configuration: wo_split in 1/2/4/8 and K / num_kv_heads / wo_split a multiple of 16."""
    split = check_wo_split(wo_split)
    if n < 1 or num_kv_heads < 1 or k % num_kv_heads:
        raise WoSplitError(f"K={k} must be divisible by num_kv_heads={num_kv_heads}, and N={n} must be positive")
    if (k // num_kv_heads) % (split * BLOCK):
        raise WoSplitError(
            f"K={k}, num_kv_heads={num_kv_heads}, wo_split={split}: each slot's K range "
            f"(K / num_kv_heads / wo_split = {k / num_kv_heads / split:g}) must be a multiple of {BLOCK}, "
            f"whole NVFP4 scale blocks; pick a smaller wo_split"
        )
    return WoGemvShape(k, n, num_kv_heads, split)


def e2m1_word_ptx() -> str:
    """PTX decoding one int32 word of 8 E2M1 codes (code j in bits 4j..4j+3) against the f16x2 scale pair {$r1}.

    Outputs {$w0}..{$w7} are f32 e2m1(code j) * scale * 2^-14 for j = 0..7, exactly: code j and code j+4 go to the
    low and high half of an f16x2 as ((code & 7) << 9) | ((code & 8) << 12), which is e2m1 * 2^-14 (code 1 is the
    f16 subnormal 0.5 * 2^-14, code 8 is -0); one mul.rn.f16x2 by (scale, scale) is exact (at most 6 significant
    bits, a multiple of 2^-24 since E4M3 values are multiples of 2^-9, at most 6 * 448 * 2^-14), and so is cvt to
    f32. No .ftz anywhere: f16 subnormals must survive. Four instructions per pair build the bits, about 2 per value.
    """
    lines = ["{", ".reg .b32 m, s;", ".reg .b16 h_lo, h_hi;"]
    for j in range(4):
        mag = f"shl.b32 m, {{$r0}}, {9 - 4 * j};" if j < 3 else "shr.u32 m, {$r0}, 3;"
        sign = f"shl.b32 s, {{$r0}}, {12 - 4 * j};" if j < 3 else "mov.b32 s, {$r0};"
        lines += [mag, "and.b32 m, m, 0x0E000E00;", sign, "and.b32 s, s, 0x80008000;", "or.b32 m, m, s;",
                  "mul.rn.f16x2 m, m, {$r1};", "mov.b32 {h_lo, h_hi}, m;",
                  f"cvt.f32.f16 {{$w{j}}}, h_lo;", f"cvt.f32.f16 {{$w{j + 4}}}, h_hi;"]  # fmt: skip
    return "\n".join([*lines, "}"])


def e4m3_pair_ptx(byte: int) -> str:
    """PTX turning byte `byte` (0..3) of the int32 scale word {$r0} into the f16x2 pair (scale, scale), exactly.

    prmt puts the byte B in bits 8..15 of both halves; ((B & 0x7F) << 7) | ((B & 0x80) << 8) is the f16 of
    E4M3(B) * 2^-8 (E4M3 subnormals become f16 subnormals, same mantissa bits), and mul.rn.f16x2 by (256, 256)
    is exact (at most 448). E4M3 NaN codes are not handled (NVFP4 scales are finite).
    """
    selector = (byte << 12) | (4 << 8) | (byte << 4) | 4  # bytes: 0, B, 0, B (selector 4 is byte 0 of z = 0)
    return "\n".join([
        "{", ".reg .b32 p, q, z;", "mov.b32 z, 0;", f"prmt.b32 p, {{$r0}}, z, 0x{selector:04X};",
        "shr.u32 q, p, 1;", "and.b32 q, q, 0x3F803F80;", "and.b32 p, p, 0x80008000;", "or.b32 q, q, p;",
        "mov.b32 p, 0x5C005C00;", "mul.rn.f16x2 {$w0}, q, p;", "}",
    ])  # fmt: skip


def staged_tile_order(tile_values: int) -> list[tuple[int, int, int, int]]:
    """The staged kernel's FMA order inside a tile: (vector, block in vector, word in block, k offset) per word.

    A tile row is read as 128-bit vectors (32 values = two 16-value blocks of two 8-value words); the kernel walks
    this list in order and does the word's 8 FMAs for k offset + 0..7, so k runs 0..tile_values - 1 in order.
    """
    return [(q, h, w, tile_offset(q, h, w)) for q in range(tile_values // 32) for h in range(2) for w in range(2)]


def tile_offset(q: int, h: int, w: int) -> int:
    """K offset inside a tile of word w (0, 1) of block h (0, 1) of 128-bit vector q: 8 values a word."""
    return q * 32 + h * BLOCK + w * 8


@cache
def _kernel_class() -> type:
    """Define the kernel class (its decorators need `cutlass`, so this runs on first use)."""
    cutlass, cute = cute_modules()

    def decode_e4m3_quarter(byte: Any) -> Any:
        """E4M3 byte -> scale / 4 as fp32 (exact): (8·[e>0] + m) << max(e, 1) · 2^-12, sign from bit 7."""
        e = (byte >> 3) & 0xF
        mant = (byte & 0x7) | cutlass.Int32(cutlass.select_(e > 0, cutlass.Int32(8), cutlass.Int32(0)))
        mag = cutlass.Float32(mant << cutlass.max(e, cutlass.Int32(1))) * cutlass.Float32(2.0**-12)
        return cutlass.Float32(cutlass.select_((byte & 0x80) != 0, -mag, mag))

    def decode_e2m1_times4(code: Any) -> Any:
        """E2M1 code -> 4·value as int: (2·[e>0] + m) << max(e, 1), negated when bit 3 is set."""
        e = (code >> 1) & 0x3
        mant = (code & 0x1) | cutlass.Int32(cutlass.select_(e > 0, cutlass.Int32(2), cutlass.Int32(0)))
        mag = mant << cutlass.max(e, cutlass.Int32(1))
        return cutlass.Int32(cutlass.select_((code & 0x8) != 0, -mag, mag))

    class WoGemvKernel:
        """Split-K NVFP4 GEMV; the shape is baked in as compile-time constants."""

        def __init__(self, shape: WoGemvShape) -> None:
            self.n = shape.n
            self.slots = shape.slots
            self.slot_len = shape.slot_len
            self.row_blocks = shape.row_blocks
            self.per_load = shape.values_per_load

        @cute.jit
        def __call__(self, x, packed, scales, global_scale, partial, counter, y, stream):
            """Host side: build the 128-bit (or 64-bit) copy atom and launch (row blocks, slots) CTAs."""
            atom = cute.make_copy_atom(cute.nvgpu.CopyUniversalOp(), cutlass.Int32, num_bits_per_copy=self.per_load * 4)
            self.kernel(x, packed, scales, global_scale, partial, counter, y, atom).launch(
                grid=(self.row_blocks, self.slots, 1), block=(THREADS, 1, 1), stream=stream
            )

        @cute.kernel
        def kernel(self, x, packed, scales, global_scale, partial, counter, y, atom):
            """Device side: one row's sequential partial sum per thread, then arrival counter and slot-order gather."""
            tidx, _, _ = cute.arch.thread_idx()
            rb, slot, _ = cute.arch.block_idx()
            smem = cutlass.memory.SmemAllocator()
            xs = smem.allocate_tensor(cutlass.Float32, cute.make_layout(self.slot_len), byte_alignment=16)
            last = smem.allocate_tensor(cutlass.Int32, cute.make_layout(1), byte_alignment=4)

            gx = cute.local_tile(x, (self.slot_len,), (slot,))
            for i in cutlass.range(tidx, self.slot_len, THREADS):
                xs[i] = gx[i].to(cutlass.Float32)
            cute.arch.sync_threads()

            words_per_load = self.per_load // 8
            words = cute.make_rmem_tensor((words_per_load,), cutlass.Int32)
            n = rb * THREADS + tidx
            if n < self.n:
                row_words = cute.local_tile(packed[n, None], (self.slot_len // 8,), (slot,))
                row_scales = cute.local_tile(scales[n, None], (self.slot_len // self.per_load,), (slot,))
                acc = cutlass.Float32(0.0)
                for c in cutlass.range(self.slot_len // self.per_load):
                    cute.copy(atom, cute.local_tile(row_words, (words_per_load,), (c,)), words)
                    block_scales = cutlass.Int32(row_scales[c])  # an int16 pair, or one uint8 with 64-bit loads
                    for half in cutlass.range_constexpr(self.per_load // BLOCK):  # 16-value blocks, one scale each
                        quarter_scale = decode_e4m3_quarter((block_scales >> (8 * half)) & 0xFF)
                        for w in cutlass.range_constexpr(2):
                            word = words[2 * half + w]
                            for j in cutlass.range_constexpr(8):
                                q = decode_e2m1_times4((word >> (4 * j)) & 0xF)
                                weight = (cutlass.Float32(q) * quarter_scale) * global_scale
                                xk = xs[c * self.per_load + half * BLOCK + w * 8 + j]
                                acc = cute.math.fma(xk, weight, acc)
                partial[slot, n] = acc

            cute.arch.fence_acq_rel_gpu()
            cute.arch.sync_threads()
            if tidx == 0:
                arrived = cute.arch.atomic_add(counter.iterator + rb, cutlass.Int32(1), sem="acq_rel", scope="gpu")
                last[0] = cutlass.select_(arrived == self.slots - 1, cutlass.Int32(1), cutlass.Int32(0))
            cute.arch.sync_threads()

            if last[0] == 1:
                cute.arch.fence_acq_rel_gpu()
                if n < self.n:
                    total = partial[0, n]
                    for s in cutlass.range_constexpr(1, self.slots):  # slot order
                        total = total + partial[s, n]
                    y[n] = total
                if tidx == 0:
                    counter[rb] = cutlass.Int32(0)

    return WoGemvKernel


@cache
def _staged_kernel_class() -> type:
    """Define the staged kernel class (its decorators need `cutlass`, so this runs on first use)."""
    cutlass, cute = cute_modules()
    from cutlass.cute.nvgpu import cpasync

    word_ptx = e2m1_word_ptx()
    pair_ptx = [e4m3_pair_ptx(b) for b in range(4)]

    class WoGemvStagedKernel:
        """Split-K NVFP4 GEMV, one warp per 32 rows, weights staged through shared memory; shape baked in."""

        def __init__(self, shape: WoGemvShape) -> None:
            self.n = shape.n
            self.slots = shape.slots
            self.slot_len = shape.slot_len
            self.row_blocks = shape.row_blocks
            self.tile = shape.tile_values
            self.tiles = shape.slot_len // shape.tile_values
            self.vectors_per_row = shape.tile_values // 32  # 128-bit vectors of one row in one tile
            self.scale_words = shape.tile_values // (4 * BLOCK)  # int32 scale words of one row in one tile
            self.row_words = shape.tile_values // 8 + TILE_PAD_WORDS

        @cute.jit
        def __call__(self, x, packed, scales, global_scale, partial, counter, y, stream):
            """Host side: cp.async atoms (weights 16 B, L2 only; scales 4-16 B), shared-memory read atoms, launch."""
            scale_bits = 32 * self.scale_words
            atoms = (
                cute.make_copy_atom(
                    cpasync.CopyG2SOp(cpasync.LoadCacheMode.GLOBAL), cutlass.Int32, num_bits_per_copy=128
                ),
                cute.make_copy_atom(cpasync.CopyG2SOp(), cutlass.Int32, num_bits_per_copy=scale_bits),
                cute.make_copy_atom(cute.nvgpu.CopyUniversalOp(), cutlass.Int32, num_bits_per_copy=128),
                cute.make_copy_atom(cute.nvgpu.CopyUniversalOp(), cutlass.Int32, num_bits_per_copy=scale_bits),
            )
            self.kernel(x, packed, scales, global_scale, partial, counter, y, *atoms).launch(
                grid=(self.row_blocks, self.slots, 1), block=(STAGED_ROWS, 1, 1), stream=stream
            )

        @cute.kernel
        def kernel(self, x, packed, scales, global_scale, partial, counter, y, g2s, g2s_scale, s2r, s2r_scale):
            """Device side: cp.async tile t+1 while tile t is decoded, one row's sequential sum per lane, the gather."""
            lane, _, _ = cute.arch.thread_idx()
            rb, slot, _ = cute.arch.block_idx()
            smem = cutlass.memory.SmemAllocator()
            xs = smem.allocate_tensor(cutlass.Float32, cute.make_layout(self.slot_len), byte_alignment=16)
            tile_layout = cute.make_layout(
                (2, STAGED_ROWS, self.row_words), stride=(STAGED_ROWS * self.row_words, self.row_words, 1)
            )
            tiles = smem.allocate_tensor(cutlass.Int32, tile_layout, byte_alignment=16)
            scale_layout = cute.make_layout(
                (2, STAGED_ROWS, self.scale_words), stride=(STAGED_ROWS * self.scale_words, self.scale_words, 1)
            )
            scale_tiles = smem.allocate_tensor(cutlass.Int32, scale_layout, byte_alignment=16)
            last = smem.allocate_tensor(cutlass.Int32, cute.make_layout(1), byte_alignment=4)

            n = rb * STAGED_ROWS + lane
            n_read = cutlass.min(n, cutlass.Int32(self.n - 1))  # rows past N read row N-1 and write nothing
            first_tile = slot * self.tiles  # index, in tile-sized pieces of a row, of the slot's first tile
            words = cute.make_rmem_tensor((4,), cutlass.Int32)
            scale_now = cute.make_rmem_tensor((self.scale_words,), cutlass.Int32)

            # Tile 0 (buffer 0) in flight first. Lane l copies vector v = l + 32 i of the 32 x V vectors of a tile:
            # row v / V, vector v % V, so a warp's copy covers 32 / V rows' whole tile rows, contiguous in memory.
            for i in cutlass.range_constexpr(self.vectors_per_row):
                v = lane + 32 * i
                r = cutlass.min(rb * STAGED_ROWS + v // self.vectors_per_row, cutlass.Int32(self.n - 1))
                col = first_tile * self.vectors_per_row + v % self.vectors_per_row
                dst = cute.local_tile(tiles[0, v // self.vectors_per_row, None], (4,), (v % self.vectors_per_row,))
                cute.copy(g2s, cute.local_tile(packed[r, None], (4,), (col,)), dst)
            scale_src = cute.local_tile(scales[n_read, None], (self.scale_words,), (first_tile,))
            cute.copy(g2s_scale, scale_src, scale_tiles[0, lane, None])
            cute.arch.cp_async_commit_group()

            # x * global_scale * 2^14 in fp32, the factor the f16 weights lack (exact: a power-of-two rescale).
            gx = cute.local_tile(x, (self.slot_len,), (slot,))
            x_scale = global_scale * cutlass.Float32(2.0**E2M1_SHIFT)
            for i in cutlass.range_constexpr(-(-self.slot_len // STAGED_ROWS)):
                k = lane + STAGED_ROWS * i
                if k < self.slot_len:
                    xs[k] = gx[k].to(cutlass.Float32) * x_scale
            cute.arch.cp_async_wait_group(0)
            cute.arch.sync_threads()

            acc = cutlass.Float32(0.0)
            for t in cutlass.range(self.tiles):
                buf = t % 2
                if t + 1 < self.tiles:  # tile t+1 into the other buffer: nobody reads it since the last barrier
                    for i in cutlass.range_constexpr(self.vectors_per_row):
                        v = lane + 32 * i
                        r = cutlass.min(rb * STAGED_ROWS + v // self.vectors_per_row, cutlass.Int32(self.n - 1))
                        col = (first_tile + t + 1) * self.vectors_per_row + v % self.vectors_per_row
                        dst = cute.local_tile(tiles[1 - buf, v // self.vectors_per_row, None], (4,),
                                              (v % self.vectors_per_row,))  # fmt: skip
                        cute.copy(g2s, cute.local_tile(packed[r, None], (4,), (col,)), dst)
                    scale_src = cute.local_tile(scales[n_read, None], (self.scale_words,), (first_tile + t + 1,))
                    cute.copy(g2s_scale, scale_src, scale_tiles[1 - buf, lane, None])
                    cute.arch.cp_async_commit_group()
                cute.copy(s2r_scale, scale_tiles[buf, lane, None], scale_now)
                row = tiles[buf, lane, None]
                k0 = t * self.tile
                for q in cutlass.range_constexpr(self.vectors_per_row):
                    cute.copy(s2r, cute.local_tile(row, (4,), (q,)), words)
                    for h in cutlass.range_constexpr(2):
                        block = 2 * q + h  # 16-value block of this tile: scale byte block % 4 of word block // 4
                        pair = cute.arch.inline_ptx(pair_ptx[block % 4], write_only_types=[cutlass.Int32],
                                                    read_only_args=[scale_now[block // 4]])  # fmt: skip
                        for w in cutlass.range_constexpr(2):
                            vals = cute.arch.inline_ptx(word_ptx, write_only_types=[cutlass.Float32] * 8,
                                                        read_only_args=[words[2 * h + w], pair])  # fmt: skip
                            k = k0 + tile_offset(q, h, w)
                            for j in cutlass.range_constexpr(8):  # k order
                                acc = cute.math.fma(xs[k + j], vals[j], acc)
                cute.arch.cp_async_wait_group(0)  # this lane's copies of tile t+1 have landed ...
                cute.arch.sync_threads()  # ... every lane's, and every lane is done reading buffer t % 2
            if n < self.n:
                partial[slot, n] = acc

            cute.arch.fence_acq_rel_gpu()
            cute.arch.sync_threads()
            if lane == 0:
                arrived = cute.arch.atomic_add(counter.iterator + rb, cutlass.Int32(1), sem="acq_rel", scope="gpu")
                last[0] = cutlass.select_(arrived == self.slots - 1, cutlass.Int32(1), cutlass.Int32(0))
            cute.arch.sync_threads()

            if last[0] == 1:
                cute.arch.fence_acq_rel_gpu()
                if n < self.n:
                    total = partial[0, n]
                    for s in cutlass.range_constexpr(1, self.slots):  # slot order
                        total = total + partial[s, n]
                    y[n] = total
                if lane == 0:
                    counter[rb] = cutlass.Int32(0)

    return WoGemvStagedKernel


def _kernel_for(shape: WoGemvShape) -> Any:
    """The staged kernel where the slot allows it, else the direct one, built for `shape`."""
    return (_staged_kernel_class() if shape.staged else _kernel_class())(shape)


# How the E4M3 scales are passed per `scale_view_values`: torch view dtype, and the matching CuTe dtype.
_SCALE_VIEWS = {
    64: (torch.int32, lambda cutlass: cutlass.Int32),
    32: (torch.int16, lambda cutlass: cutlass.Int16),
    16: (torch.uint8, lambda cutlass: cutlass.Uint8),
}


def _host_args(shape: WoGemvShape) -> tuple:
    """Fake arguments with the shapes and dtypes `wo_gemv` passes, for compiling without tensors."""
    cutlass, _ = cute_modules()
    return (
        fake_tensor(cutlass.BFloat16, (shape.k,)),
        fake_tensor(cutlass.Int32, (shape.n, shape.k // 8)),
        fake_tensor(_SCALE_VIEWS[shape.scale_view_values][1](cutlass), (shape.n, shape.k // shape.scale_view_values)),
        cutlass.Float32(1.0),
        fake_tensor(cutlass.Float32, (shape.slots, shape.n)),
        fake_tensor(cutlass.Int32, (shape.row_blocks,)),
        fake_tensor(cutlass.Float32, (shape.n,)),
        fake_stream(),
    )


def compile_wo_gemv(k: int, n: int, num_kv_heads: int, wo_split: int, arch: str, dump_dir: Path) -> CompileReport:
    """Compile (no GPU needed) for `arch`, e.g. "sm_121a", keeping PTX and cubin in `dump_dir` (one dir per variant)."""
    shape = wo_gemv_shape(k, n, num_kv_heads, wo_split)
    variant = f"K={k} N={n} kv_heads={num_kv_heads} wo_split={shape.wo_split}"
    return compile_kept(_kernel_for(shape), _host_args(shape), kernel="wo_gemv_nvfp4", variant=variant,
                        arch=arch, dump_dir=dump_dir)  # fmt: skip


@cache
def _launcher(shape: WoGemvShape, device: torch.device) -> SlotLauncher:
    """Compile once per configuration and device; the counter starts at 0 and every launch leaves it at 0."""
    _, cute = cute_modules()
    compiled = cute.compile(_kernel_for(shape), *_host_args(shape))  # targets the GPU it detects
    partial = torch.empty(shape.slots, shape.n, dtype=torch.float32, device=device)
    return SlotLauncher(compiled, partial, torch.zeros(shape.row_blocks, dtype=torch.int32, device=device))


def wo_gemv(
    x: torch.Tensor, packed: torch.Tensor, scales: torch.Tensor, global_scale: float, num_kv_heads: int, wo_split: int
) -> torch.Tensor:
    """y = x @ w.T for NVFP4 `w` (packed uint8 [N, K/2], scales float8_e4m3fn [N, K/16]) and bf16 `x` [K]; fp32 [N].

    Launches on the current CUDA stream. The workspace is shared per configuration, so calls with the same
    configuration must not run concurrently on different streams.
    """
    require_cuda("wo_gemv", x, packed, scales)
    cutlass, _ = cute_modules()
    from cutlass.cute.runtime import from_dlpack

    n, half_k = packed.shape
    shape = wo_gemv_shape(half_k * 2, n, num_kv_heads, wo_split)
    wrong = (
        x.shape != (shape.k,) or x.dtype != torch.bfloat16 or packed.dtype != torch.uint8
        or scales.shape != (n, shape.k // 16) or scales.dtype != torch.float8_e4m3fn
    )  # fmt: skip
    if wrong:
        raise ValueError(
            f"expected x bf16 [{shape.k}], packed uint8 [{n}, {half_k}] and scales float8_e4m3fn "
            f"[{n}, {shape.k // 16}], got x {x.dtype} {tuple(x.shape)}, packed {packed.dtype} and scales "
            f"{scales.dtype} {tuple(scales.shape)}"
        )
    with torch.cuda.device(x.device) if x.is_cuda else contextlib.nullcontext():  # the GPU x lives on
        launcher = _launcher(shape, x.device)
        y = torch.empty(n, dtype=torch.float32, device=x.device)
        tensors = (
            x.contiguous(),
            packed.contiguous().view(torch.int32),
            scales.contiguous().view(_SCALE_VIEWS[shape.scale_view_values][0]),
        )
        launcher.compiled(
            *(from_dlpack(t, assumed_align=16) for t in tensors),
            cutlass.Float32(global_scale),
            from_dlpack(launcher.partial, assumed_align=16),
            from_dlpack(launcher.counter, assumed_align=16),
            from_dlpack(y, assumed_align=16),
            current_stream(x.device),
        )
    return y
