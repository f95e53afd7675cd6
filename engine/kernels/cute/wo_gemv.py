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
from engine.kernels.wo_split import WoSplitError, check_wo_split

THREADS = 128  # one output row per thread
BLOCK = 16  # NVFP4 values per E4M3 scale: a slot must hold whole blocks


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
    def row_blocks(self) -> int:
        """CTAs per slot: ceil(N / THREADS)."""
        return -(-self.n // THREADS)


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


# How the E4M3 scales are passed per values-per-load: torch view dtype, and the matching CuTe dtype.
_SCALE_VIEWS = {32: (torch.int16, lambda cutlass: cutlass.Int16), 16: (torch.uint8, lambda cutlass: cutlass.Uint8)}


def _host_args(shape: WoGemvShape) -> tuple:
    """Fake arguments with the shapes and dtypes `wo_gemv` passes, for compiling without tensors."""
    cutlass, _ = cute_modules()
    return (
        fake_tensor(cutlass.BFloat16, (shape.k,)),
        fake_tensor(cutlass.Int32, (shape.n, shape.k // 8)),
        fake_tensor(_SCALE_VIEWS[shape.values_per_load][1](cutlass), (shape.n, shape.k // shape.values_per_load)),
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
    return compile_kept(_kernel_class()(shape), _host_args(shape), kernel="wo_gemv_nvfp4", variant=variant,
                        arch=arch, dump_dir=dump_dir)  # fmt: skip


@cache
def _launcher(shape: WoGemvShape, device: torch.device) -> SlotLauncher:
    """Compile once per configuration and device; the counter starts at 0 and every launch leaves it at 0."""
    _, cute = cute_modules()
    compiled = cute.compile(_kernel_class()(shape), *_host_args(shape))  # targets the GPU it detects
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
            scales.contiguous().view(_SCALE_VIEWS[shape.values_per_load][0]),
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
