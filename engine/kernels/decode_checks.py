"""The start-up checks of all three decode kernels a model runs, at the model's own shapes.

- W_O: bit-exact against the split order and a float64 tolerance (`checks.check_wo_gemv`);
- paged split-KV attention: V all ones gives exactly 1.0 (hand-checkable), the output is within
  5e-5 + 1e-4·|ref| of the fp32 gather reference on a shuffled block table with sequences that end
  mid-page, and a second call gives the same bits;
- fused MLP: within 64·eps·(error scale) of a float64 SwiGLU MLP (`fused_mlp.mlp_error_scale`).
Each check goes through the kernel set's own entry points, with inputs in its storage dtype.
"""

from __future__ import annotations

import torch

from engine.kernels import fused_mlp as mlp_ref
from engine.kernels.backend import DecodeKernels, ModelShapes
from engine.kernels.checks import FP32_EPS, TOLERANCE_ULPS, KernelCheckResult, check_wo_gemv
from engine.kernels.paged_attention import paged_attention_reference

ATTENTION_ATOL, ATTENTION_RTOL = 5e-5, 1e-4
CHECK_SEQ_LENS = (1, 17, 40)  # one token, one past a page, mid-page after several pages


def check_decode_kernels(
    kernels: DecodeKernels, m: ModelShapes, device: torch.device, seed: int = 0
) -> list[KernelCheckResult]:
    """W_O, attention and MLP checks of `kernels` at the shapes `m`; a kernel that raises fails its checks."""
    return [
        *check_wo_gemv(kernels.wo, m.wo_split, m.kv_heads, m.heads * m.head_dim, m.hidden, device, seed),
        *_guarded(f"paged_attention[kv_splits={m.kv_splits}]", ("ones", "tolerance", "repeat"),
                  lambda: _attention_checks(kernels, m, device, seed)),
        *_guarded(f"fused_mlp[num_slots={m.mlp_slots}]", ("tolerance",),
                  lambda: _mlp_checks(kernels, m, device, seed)),
    ]  # fmt: skip


def _guarded(name: str, checks: tuple[str, ...], run) -> list[KernelCheckResult]:
    try:
        return run()
    except Exception as exc:  # a kernel that cannot run fails its checks instead of stopping the engine
        detail = f"raised {type(exc).__name__}: {exc}"
        return [KernelCheckResult(name, check, False, None, 0.0, detail) for check in checks]


def _paged(m: ModelShapes, dtype: torch.dtype, device: torch.device, seed: int, v_ones: bool) -> tuple:
    gen = torch.Generator().manual_seed(seed)
    blocks = -(-max(CHECK_SEQ_LENS) // m.page_size)
    pages = len(CHECK_SEQ_LENS) * blocks + 3
    shape = (pages, m.page_size, m.kv_heads, m.head_dim)
    q = torch.randn(len(CHECK_SEQ_LENS), m.heads, m.head_dim, generator=gen).to(torch.bfloat16).float()
    k = torch.randn(shape, generator=gen).to(torch.bfloat16)
    v = torch.ones(shape) if v_ones else torch.randn(shape, generator=gen).to(torch.bfloat16)
    table = torch.randperm(pages, generator=gen)[: len(CHECK_SEQ_LENS) * blocks].view(-1, blocks).to(torch.int32)
    lens = torch.tensor(CHECK_SEQ_LENS, dtype=torch.int32)
    return q.to(device), k.to(dtype).to(device), v.to(dtype).to(device), table.to(device), lens.to(device)


def _attention_checks(kernels: DecodeKernels, m: ModelShapes, device: torch.device, seed: int) -> list:
    name = f"paged_attention[kv_splits={m.kv_splits}]"
    shape = f"H={m.heads}, kv_heads={m.kv_heads}, D={m.head_dim}, seq_lens={list(CHECK_SEQ_LENS)}"
    scale = m.head_dim**-0.5
    q, k, v, table, lens = _paged(m, kernels.storage_dtype, device, seed, v_ones=True)
    ones = kernels.attention(q, k, v, table, lens, scale, m.kv_splits).float()
    ones_diff = float((ones - 1.0).abs().max())
    q, k, v, table, lens = _paged(m, kernels.storage_dtype, device, seed + 1, v_ones=False)
    got = kernels.attention(q, k, v, table, lens, scale, m.kv_splits).float()
    again = kernels.attention(q, k, v, table, lens, scale, m.kv_splits).float()
    want = paged_attention_reference(q, k, v, table, lens, scale)
    bound = ATTENTION_ATOL + ATTENTION_RTOL * want.abs()
    excess = (got - want).abs() - bound
    worst = int(excess.flatten().argmax())
    diff, allowed = float((got - want).abs().flatten()[worst]), float(bound.flatten()[worst])
    repeat_diff = float((got - again).abs().max())
    return [
        KernelCheckResult(name, "ones", ones_diff == 0.0, ones_diff, 0.0, f"V all ones gives exactly 1.0, {shape}"),
        KernelCheckResult(name, "tolerance", diff <= allowed, diff, allowed,
                          f"vs the fp32 gather reference, {ATTENTION_ATOL:g} + {ATTENTION_RTOL:g}·|ref|, {shape}"),
        KernelCheckResult(name, "repeat", torch.equal(got, again), repeat_diff, 0.0, f"same bits twice, {shape}"),
    ]  # fmt: skip


def _mlp_checks(kernels: DecodeKernels, m: ModelShapes, device: torch.device, seed: int) -> list:
    name = f"fused_mlp[num_slots={m.mlp_slots}]"
    x, w_gate, w_up, w_down = (t.to(device) for t in mlp_ref.random_inputs(m.hidden, m.ffn, seed))
    weights = (w.to(kernels.storage_dtype) for w in (w_gate, w_up, w_down))
    got = kernels.mlp(x.unsqueeze(0), *weights, m.mlp_slots).double()[0]
    want = mlp_ref.mlp_reference(x.unsqueeze(0), w_gate, w_up, w_down, dtype=torch.float64)[0]
    bound = TOLERANCE_ULPS * FP32_EPS * mlp_ref.mlp_error_scale(x, w_gate, w_up, w_down)
    diff = float((got - want).abs().max())
    detail = f"vs a float64 SwiGLU MLP, H={m.hidden}, F={m.ffn}"
    return [KernelCheckResult(name, "tolerance", diff <= bound, diff, bound, detail)]
