"""W_O split-K GEMV for decode batch 1 with NVFP4 weights, in the CuTe DSL.

    y[n] = sum_k x[k] * w[n, k]      x bf16 [K], w NVFP4 [N, K], y fp32 [N]

One CTA per slot (`num_kv_heads * wo_split` slots, slot = by * wo_split + bx, see `wo_split.slot_bounds`).
Because every slot's K range is a multiple of 32, all slots have the same length L = K / num_kv_heads / wo_split
and slot s covers [s*L, (s+1)*L). Each thread owns rows n = tid, tid + 128, ... and walks its row's range in k
order with one fp32 FMA per element, reading 32 fp4 values per 128-bit load; the CTA writes its partial sums to
`partial[slot, n]`. After a gpu-scope fence every CTA arrives on an atomic counter; the last one sums the partials
in slot order into y and resets the counter to 0. This is the order `wo_split.reference_split_order` computes, so
the two agree bit for bit whenever x[k] * w[n, k] is exact in fp32 (for example with a power-of-two global scale).

Inside the kernel the packed weights are read as int32 words (8 fp4 values, element j in bits 4j..4j+3) and the
E4M3 block scales as int16 pairs (one pair per 32 values), both decoded with integer arithmetic, which works on
sm_90a as well as on sm_100+/sm_12x. E4M3 NaN codes are not handled (NVFP4 scales are finite).
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
from engine.kernels.wo_split import WoSplitError, check_wo_split

THREADS = 128
VALUES_PER_LOAD = 32  # one 128-bit load = 16 bytes of packed fp4


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


def wo_gemv_shape(k: int, n: int, num_kv_heads: int, wo_split: int) -> WoGemvShape:
    """Validate a configuration: wo_split in 1/2/4/8 and K / num_kv_heads / wo_split a multiple of 32."""
    split = check_wo_split(wo_split)
    if n < 1 or num_kv_heads < 1 or k % num_kv_heads:
        raise WoSplitError(f"K={k} must be divisible by num_kv_heads={num_kv_heads}, and N={n} must be positive")
    if (k // num_kv_heads) % (split * VALUES_PER_LOAD):
        raise WoSplitError(
            f"K={k}, num_kv_heads={num_kv_heads}, wo_split={split}: each slot's K range "
            f"(K / num_kv_heads / wo_split = {k / num_kv_heads / split:g}) must be a multiple of {VALUES_PER_LOAD}, "
            f"one 128-bit load of fp4 values; pick a smaller wo_split"
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

        @cute.jit
        def __call__(self, x, packed, scales, global_scale, partial, counter, y, stream):
            """Host side: build the 128-bit copy atom and launch one CTA per slot."""
            atom = cute.make_copy_atom(cute.nvgpu.CopyUniversalOp(), cutlass.Int32, num_bits_per_copy=128)
            self.kernel(x, packed, scales, global_scale, partial, counter, y, atom).launch(
                grid=(self.slots, 1, 1), block=(THREADS, 1, 1), stream=stream
            )

        @cute.kernel
        def kernel(self, x, packed, scales, global_scale, partial, counter, y, atom):
            """Device side: per-row sequential partial sums, then arrival counter and slot-order gather."""
            tidx, _, _ = cute.arch.thread_idx()
            slot, _, _ = cute.arch.block_idx()
            smem = cutlass.memory.SmemAllocator()
            xs = smem.allocate_tensor(cutlass.Float32, cute.make_layout(self.slot_len), byte_alignment=16)
            last = smem.allocate_tensor(cutlass.Int32, cute.make_layout(1), byte_alignment=4)

            gx = cute.local_tile(x, (self.slot_len,), (slot,))
            for i in cutlass.range(tidx, self.slot_len, THREADS):
                xs[i] = gx[i].to(cutlass.Float32)
            cute.arch.sync_threads()

            words = cute.make_rmem_tensor((4,), cutlass.Int32)
            for n in cutlass.range(tidx, self.n, THREADS):
                row_words = cute.local_tile(packed[n, None], (self.slot_len // 8,), (slot,))
                row_scales = cute.local_tile(scales[n, None], (self.slot_len // VALUES_PER_LOAD,), (slot,))
                acc = cutlass.Float32(0.0)
                for c in cutlass.range(self.slot_len // VALUES_PER_LOAD):
                    cute.copy(atom, cute.local_tile(row_words, (4,), (c,)), words)
                    pair = cutlass.Int32(row_scales[c])
                    for half in cutlass.range_constexpr(2):  # two 16-value blocks, each with its own scale
                        quarter_scale = decode_e4m3_quarter((pair >> (8 * half)) & 0xFF)
                        for w in cutlass.range_constexpr(2):
                            word = words[2 * half + w]
                            for j in cutlass.range_constexpr(8):
                                q = decode_e2m1_times4((word >> (4 * j)) & 0xF)
                                weight = (cutlass.Float32(q) * quarter_scale) * global_scale
                                xk = xs[c * VALUES_PER_LOAD + half * 16 + w * 8 + j]
                                acc = cute.math.fma(xk, weight, acc)
                partial[slot, n] = acc

            cute.arch.fence_acq_rel_gpu()
            cute.arch.sync_threads()
            if tidx == 0:
                arrived = cute.arch.atomic_add(counter.iterator, cutlass.Int32(1), sem="acq_rel", scope="gpu")
                last[0] = cutlass.select_(arrived == self.slots - 1, cutlass.Int32(1), cutlass.Int32(0))
            cute.arch.sync_threads()

            if last[0] == 1:
                cute.arch.fence_acq_rel_gpu()
                for n in cutlass.range(tidx, self.n, THREADS):
                    total = partial[0, n]
                    for s in cutlass.range_constexpr(1, self.slots):  # slot order
                        total = total + partial[s, n]
                    y[n] = total
                if tidx == 0:
                    counter[0] = cutlass.Int32(0)

    return WoGemvKernel


def _host_args(shape: WoGemvShape) -> tuple:
    """Fake arguments with the shapes and dtypes `wo_gemv` passes, for compiling without tensors."""
    cutlass, _ = cute_modules()
    return (
        fake_tensor(cutlass.BFloat16, (shape.k,)),
        fake_tensor(cutlass.Int32, (shape.n, shape.k // 8)),
        fake_tensor(cutlass.Int16, (shape.n, shape.k // VALUES_PER_LOAD)),
        cutlass.Float32(1.0),
        fake_tensor(cutlass.Float32, (shape.slots, shape.n)),
        fake_tensor(cutlass.Int32, (1,)),
        fake_tensor(cutlass.Float32, (shape.n,)),
        fake_stream(),
    )


def compile_wo_gemv(k: int, n: int, num_kv_heads: int, wo_split: int, arch: str, dump_dir: Path) -> CompileReport:
    """Compile (no GPU needed) for `arch`, e.g. "sm_121a", keeping PTX and cubin in `dump_dir` (one dir per variant)."""
    shape = wo_gemv_shape(k, n, num_kv_heads, wo_split)
    variant = f"K={k} N={n} kv_heads={num_kv_heads} wo_split={shape.wo_split}"
    return compile_kept(_kernel_class()(shape), _host_args(shape), kernel="wo_gemv_nvfp4", variant=variant,
                        arch=arch, dump_dir=dump_dir)  # fmt: skip


@dataclass(frozen=True)
class _Launcher:
    """A kernel compiled for the current GPU plus its workspace (slot partials and the arrival counter)."""

    compiled: Any
    partial: torch.Tensor
    counter: torch.Tensor


@cache
def _launcher(shape: WoGemvShape, device: torch.device) -> _Launcher:
    """Compile once per configuration and device; the counter starts at 0 and every launch leaves it at 0."""
    _, cute = cute_modules()
    compiled = cute.compile(_kernel_class()(shape), *_host_args(shape))  # targets the GPU it detects
    partial = torch.empty(shape.slots, shape.n, dtype=torch.float32, device=device)
    return _Launcher(compiled, partial, torch.zeros(1, dtype=torch.int32, device=device))


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
    if x.shape != (shape.k,) or x.dtype != torch.bfloat16 or scales.shape != (n, shape.k // 16):
        raise ValueError(
            f"expected x bf16 [{shape.k}] and scales [{n}, {shape.k // 16}], got "
            f"x {x.dtype} {tuple(x.shape)} and scales {tuple(scales.shape)}"
        )
    launcher = _launcher(shape, x.device)
    y = torch.empty(n, dtype=torch.float32, device=x.device)
    tensors = (
        x.contiguous(),
        packed.contiguous().view(torch.int32),
        scales.contiguous().view(torch.int16),
    )
    stream = current_stream(x.device)
    launcher.compiled(
        *(from_dlpack(t, assumed_align=16) for t in tensors),
        cutlass.Float32(global_scale),
        from_dlpack(launcher.partial, assumed_align=16),
        from_dlpack(launcher.counter, assumed_align=16),
        from_dlpack(y, assumed_align=16),
        stream,
    )
    return y
