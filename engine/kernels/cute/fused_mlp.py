"""Fused decode MLP (SwiGLU) for batch 1 with bf16 weights, in the CuTe DSL; slots gathered in slot order.

    h = silu(x·W_gateᵀ) ⊙ (x·W_upᵀ),  y = h·W_downᵀ      x bf16 [H], W_gate, W_up bf16 [F, H], W_down bf16 [H, F]

One CTA of 128 threads per slot; slot s owns the F range [s·L, (s+1)·L) with L = F / num_slots (a multiple of 8).
1. The CTA copies x to shared memory as fp32 (H·4 bytes).
2. fc1: thread t owns rows f = s·L + t, t + 128, ... and walks k = 0..H−1 in order with one fp32 FMA per element for
   gate and one for up, reading 8 bf16 weights of its row per 128-bit load (`ld.global.v4`): at each step the 32
   threads of a warp load 16 bytes from 32 consecutive rows (row stride H·2 bytes), and all read the same x[k] from
   shared memory (a broadcast). h[f] = gate / (1 + exp(−gate)) · up goes to the global `h` output and to shared memory.
3. fc2: thread t owns output rows n = t, t + 128, ... and walks the slot's f range in f order with one fp32 FMA per
   element, 8 bf16 values of W_down[n, s·L:(s+1)·L] per 128-bit load, writing partial[s, n].
4. After a gpu-scope fence every CTA arrives on an acq_rel atomic counter; the last one adds partial[0..S−1, n] in slot
   order into y and resets the counter to 0. No float atomics cross CTAs.
This is the order of `fused_mlp.reference_fc1_order` / `reference_fc2_order`: y equals `reference_fc2_order(h)` bit for
bit, and on inputs with exact fc1 sums (`fused_mlp.exact_inputs`) h matches the CPU up to exp's rounding.
Shared memory is H·4 + L·4 + 4 bytes, so H is limited to what fits in the default 48 KiB.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache
from pathlib import Path

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
from engine.kernels.fused_mlp import VALUES_PER_LOAD, FusedMlpError, slot_ranges

THREADS = 128
SMEM_LIMIT_BYTES = 48 * 1024  # the default dynamic shared memory a launch may use without an opt-in


@dataclass(frozen=True)
class FusedMlpShape:
    """One compiled configuration of the kernel."""

    hidden: int
    ffn: int
    num_slots: int

    @property
    def slot_len(self) -> int:
        """F values per slot: F / num_slots."""
        return self.ffn // self.num_slots

    @property
    def smem_bytes(self) -> int:
        """Shared memory per CTA: x and the slot's h in fp32, plus the last-CTA flag."""
        return 4 * (self.hidden + self.slot_len + 1)


def fused_mlp_shape(hidden: int, ffn: int, num_slots: int) -> FusedMlpShape:
    """Validate a configuration: F / num_slots a multiple of 8, H a multiple of 8 and small enough for shared memory."""
    slot_ranges(ffn, num_slots)
    shape = FusedMlpShape(hidden, ffn, num_slots)
    if hidden < VALUES_PER_LOAD or hidden % VALUES_PER_LOAD or shape.smem_bytes > SMEM_LIMIT_BYTES:
        raise FusedMlpError(
            f"hidden={hidden}: must be a positive multiple of {VALUES_PER_LOAD} (one 128-bit load of bf16) with "
            f"4·(hidden + ffn/num_slots + 1) = {shape.smem_bytes} bytes of shared memory <= {SMEM_LIMIT_BYTES}; "
            f"pick another hidden size or more slots"
        )
    return shape


@cache
def _kernel_class() -> type:
    """Define the kernel class (its decorators need `cutlass`, so this runs on first use)."""
    cutlass, cute = cute_modules()

    class FusedMlpKernel:
        """Slot-split SwiGLU MLP; the shape is baked in as compile-time constants."""

        def __init__(self, shape: FusedMlpShape) -> None:
            self.hidden = shape.hidden
            self.slots = shape.num_slots
            self.slot_len = shape.slot_len

        @cute.jit
        def __call__(self, x, w_gate, w_up, w_down, h, partial, counter, y, stream):
            """Host side: build the 128-bit bf16 copy atom and launch one CTA per slot."""
            atom = cute.make_copy_atom(cute.nvgpu.CopyUniversalOp(), cutlass.BFloat16, num_bits_per_copy=128)
            self.kernel(x, w_gate, w_up, w_down, h, partial, counter, y, atom).launch(
                grid=(self.slots, 1, 1), block=(THREADS, 1, 1), stream=stream
            )

        @cute.kernel
        def kernel(self, x, w_gate, w_up, w_down, h, partial, counter, y, atom):
            """Device side: fc1 rows of the slot, h, fc2 partials, then arrival counter and slot-order gather."""
            tidx, _, _ = cute.arch.thread_idx()
            slot, _, _ = cute.arch.block_idx()
            smem = cutlass.memory.SmemAllocator()
            xs = smem.allocate_tensor(cutlass.Float32, cute.make_layout(self.hidden), byte_alignment=16)
            hs = smem.allocate_tensor(cutlass.Float32, cute.make_layout(self.slot_len), byte_alignment=16)
            last = smem.allocate_tensor(cutlass.Int32, cute.make_layout(1), byte_alignment=4)

            for k in cutlass.range(tidx, self.hidden, THREADS):
                xs[k] = x[k].to(cutlass.Float32)
            cute.arch.sync_threads()

            gate_w = cute.make_rmem_tensor((VALUES_PER_LOAD,), cutlass.BFloat16)
            up_w = cute.make_rmem_tensor((VALUES_PER_LOAD,), cutlass.BFloat16)
            slot_h = cute.local_tile(h, (self.slot_len,), (slot,))
            for i in cutlass.range(tidx, self.slot_len, THREADS):
                f = slot * self.slot_len + i
                gate = cutlass.Float32(0.0)
                up = cutlass.Float32(0.0)
                for c in cutlass.range(self.hidden // VALUES_PER_LOAD):
                    cute.copy(atom, cute.local_tile(w_gate[f, None], (VALUES_PER_LOAD,), (c,)), gate_w)
                    cute.copy(atom, cute.local_tile(w_up[f, None], (VALUES_PER_LOAD,), (c,)), up_w)
                    for j in cutlass.range_constexpr(VALUES_PER_LOAD):
                        xk = xs[c * VALUES_PER_LOAD + j]
                        gate = cute.math.fma(xk, gate_w[j].to(cutlass.Float32), gate)
                        up = cute.math.fma(xk, up_w[j].to(cutlass.Float32), up)
                value = gate / (cutlass.Float32(1.0) + cute.math.exp(-gate)) * up
                slot_h[i] = value
                hs[i] = value
            cute.arch.sync_threads()

            down_w = cute.make_rmem_tensor((VALUES_PER_LOAD,), cutlass.BFloat16)
            for n in cutlass.range(tidx, self.hidden, THREADS):
                row = cute.local_tile(w_down[n, None], (self.slot_len,), (slot,))
                acc = cutlass.Float32(0.0)
                for c in cutlass.range(self.slot_len // VALUES_PER_LOAD):
                    cute.copy(atom, cute.local_tile(row, (VALUES_PER_LOAD,), (c,)), down_w)
                    for j in cutlass.range_constexpr(VALUES_PER_LOAD):
                        acc = cute.math.fma(hs[c * VALUES_PER_LOAD + j], down_w[j].to(cutlass.Float32), acc)
                partial[slot, n] = acc

            cute.arch.fence_acq_rel_gpu()
            cute.arch.sync_threads()
            if tidx == 0:
                arrived = cute.arch.atomic_add(counter.iterator, cutlass.Int32(1), sem="acq_rel", scope="gpu")
                last[0] = cutlass.select_(arrived == self.slots - 1, cutlass.Int32(1), cutlass.Int32(0))
            cute.arch.sync_threads()

            if last[0] == 1:
                cute.arch.fence_acq_rel_gpu()
                for n in cutlass.range(tidx, self.hidden, THREADS):
                    total = partial[0, n]
                    for s in cutlass.range(1, self.slots):  # slot order
                        total = total + partial[s, n]
                    y[n] = total
                if tidx == 0:
                    counter[0] = cutlass.Int32(0)

    return FusedMlpKernel


def _host_args(shape: FusedMlpShape) -> tuple:
    """Fake arguments with the shapes and dtypes `fused_mlp` passes, for compiling without tensors."""
    cutlass, _ = cute_modules()
    return (
        fake_tensor(cutlass.BFloat16, (shape.hidden,)),
        fake_tensor(cutlass.BFloat16, (shape.ffn, shape.hidden)),
        fake_tensor(cutlass.BFloat16, (shape.ffn, shape.hidden)),
        fake_tensor(cutlass.BFloat16, (shape.hidden, shape.ffn)),
        fake_tensor(cutlass.Float32, (shape.ffn,)),
        fake_tensor(cutlass.Float32, (shape.num_slots, shape.hidden)),
        fake_tensor(cutlass.Int32, (1,)),
        fake_tensor(cutlass.Float32, (shape.hidden,)),
        fake_stream(),
    )


def compile_fused_mlp(hidden: int, ffn: int, num_slots: int, arch: str, dump_dir: Path) -> CompileReport:
    """Compile (no GPU needed) for `arch`, e.g. "sm_121a", keeping PTX and cubin in `dump_dir` (one dir per variant)."""
    shape = fused_mlp_shape(hidden, ffn, num_slots)
    variant = f"H={hidden} F={ffn} num_slots={num_slots}"
    return compile_kept(_kernel_class()(shape), _host_args(shape), kernel="fused_mlp_swiglu", variant=variant,
                        arch=arch, dump_dir=dump_dir)  # fmt: skip


@cache
def _launcher(shape: FusedMlpShape, device: torch.device) -> SlotLauncher:
    """Compile once per configuration and device; the counter starts at 0 and every launch leaves it at 0."""
    _, cute = cute_modules()
    compiled = cute.compile(_kernel_class()(shape), *_host_args(shape))  # targets the GPU it detects
    partial = torch.empty(shape.num_slots, shape.hidden, dtype=torch.float32, device=device)
    return SlotLauncher(compiled, partial, torch.zeros(1, dtype=torch.int32, device=device))


def fused_mlp(
    x: torch.Tensor, w_gate: torch.Tensor, w_up: torch.Tensor, w_down: torch.Tensor, num_slots: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """(y fp32 [H], h fp32 [F]) of the SwiGLU MLP for bf16 x [H], w_gate, w_up [F, H] and w_down [H, F].

    Launches on the current CUDA stream. The workspace is shared per configuration, so calls with the same
    configuration must not run concurrently on different streams.
    """
    require_cuda("fused_mlp", x, w_gate, w_up, w_down)
    cute_modules()  # a missing DSL raises CuteUnavailableError with the install hint
    from cutlass.cute.runtime import from_dlpack

    ffn, hidden = w_gate.shape
    shape = fused_mlp_shape(hidden, ffn, num_slots)
    tensors = (x, w_gate, w_up, w_down)
    wanted = ((hidden,), (ffn, hidden), (ffn, hidden), (hidden, ffn))
    if any(t.dtype != torch.bfloat16 or tuple(t.shape) != s for t, s in zip(tensors, wanted, strict=True)):
        names = ("x", "w_gate", "w_up", "w_down")
        got = ", ".join(f"{n} {t.dtype} {tuple(t.shape)}" for n, t in zip(names, tensors, strict=True))
        raise FusedMlpError(
            f"expected bf16 x [{hidden}], w_gate and w_up [{ffn}, {hidden}], w_down [{hidden}, {ffn}]; got {got}"
        )
    inputs = tuple(t.contiguous() for t in tensors)
    launcher = _launcher(shape, x.device)
    y = torch.empty(hidden, dtype=torch.float32, device=x.device)
    h = torch.empty(ffn, dtype=torch.float32, device=x.device)
    workspace = (h, launcher.partial, launcher.counter, y)
    launcher.compiled(
        *(from_dlpack(t, assumed_align=16) for t in (*inputs, *workspace)),
        current_stream(x.device),
    )
    return y, h
