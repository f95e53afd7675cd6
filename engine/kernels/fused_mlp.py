"""Fused decode MLP (SwiGLU) split into F-range slots, gathered in slot order: torch references and checks.

    y = (silu(x·W_gateᵀ) ⊙ (x·W_upᵀ))·W_downᵀ     x [H], W_gate and W_up [F, H], W_down [H, F] (nn.Linear layout)
    silu(g) = g / (1 + exp(−g)) in fp32

Slot s of `num_slots` owns the F range [s·F/S, (s+1)·F/S). The CuTe kernel (`engine.kernels.cute.fused_mlp`) runs
one CTA per slot: gate[f] and up[f] are sequential fp32 FMA sums over k = 0..H−1, h[f] = silu(gate[f])·up[f], then
partial[s, n] is a sequential fp32 FMA sum over the slot's f in f order of h[f]·W_down[n, f], and the last CTA adds
partial[0..S−1, n] in slot order. `reference_fc1_order` and `reference_fc2_order` compute that order literally, with
correctly rounded FMAs (`fma_f32`), so the kernel's y equals `reference_fc2_order(h)` bit for bit given its own h.

Start-up checks (`check_fused_mlp`), for one configuration:
- **h tolerance**: h within 8 ulps of silu(gate)·up in float64, with gate and up from `reference_fc1_order` on exact
  inputs (there every product and sum of fc1 is exact, so any correct kernel has the same gate and up; only exp
  differs between CPU and GPU libraries);
- **bit-exact**: y against `reference_fc2_order` of the kernel's own h, on the exact and on random inputs;
- **tolerance**: y against a float64 MLP on random inputs: max |diff| <= 64 · eps(fp32) · max_n Σ|terms|, where the
  terms are those of fc2 plus the fc1 error carried through silu and the product (formula in `mlp_error_scale`).
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from engine.kernels.checks import FP32_EPS, TOLERANCE_ULPS, KernelCheckResult
from engine.kernels.wo_split import gather_slots

VALUES_PER_LOAD = 8  # bf16 values in one 128-bit load: every slot's F range is a whole number of loads
H_ULPS = 8
SILU_SLOPE_MAX = 1.1  # max |silu'(g)| is about 1.0998
FP32_TINY = float(torch.finfo(torch.float32).tiny)

MlpFn = Callable[[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, int], tuple[torch.Tensor, torch.Tensor]]


class FusedMlpError(ValueError):
    """An ffn / num_slots / hidden combination or a tensor shape the fused MLP cannot take; the message names it."""


def slot_ranges(ffn: int, num_slots: int) -> list[tuple[int, int]]:
    """F range [f0, f1) of every slot in slot order; F must split into num_slots equal multiples of 8."""
    if (
        isinstance(ffn, bool)
        or isinstance(num_slots, bool)
        or not isinstance(ffn, int)
        or not isinstance(num_slots, int)
    ):
        raise FusedMlpError(f"ffn={ffn!r} and num_slots={num_slots!r} must be integers")
    if ffn < 1 or num_slots < 1 or ffn % num_slots or (ffn // num_slots) % VALUES_PER_LOAD:
        valid = [s for s in range(1, ffn // VALUES_PER_LOAD + 1) if ffn % (s * VALUES_PER_LOAD) == 0]
        raise FusedMlpError(
            f"ffn={ffn}, num_slots={num_slots}: ffn must split into num_slots equal ranges whose length "
            f"(ffn / num_slots) is a multiple of {VALUES_PER_LOAD}, one 128-bit load of bf16; "
            f"pick num_slots from {valid[:16] or 'none: make ffn a positive multiple of 8'}"
        )
    length = ffn // num_slots
    return [(s * length, (s + 1) * length) for s in range(num_slots)]


def _shapes(x: torch.Tensor, w_gate: torch.Tensor, w_up: torch.Tensor, w_down: torch.Tensor) -> tuple[int, int]:
    """(hidden, ffn) after checking x [..., H], w_gate and w_up [F, H], w_down [H, F]."""
    hidden, ffn = x.shape[-1], w_gate.shape[0]
    if w_gate.shape != (ffn, hidden) or w_up.shape != (ffn, hidden) or w_down.shape != (hidden, ffn):
        raise FusedMlpError(
            f"expected w_gate and w_up [F, H] and w_down [H, F] with H = x.shape[-1] = {hidden}; got w_gate "
            f"{tuple(w_gate.shape)}, w_up {tuple(w_up.shape)}, w_down {tuple(w_down.shape)}"
        )
    return hidden, ffn


def silu_f32(g: torch.Tensor) -> torch.Tensor:
    """silu(g) = g / (1 + exp(−g)), the kernel's formula, in g's dtype."""
    return g / (1 + torch.exp(-g))


def mlp_reference(
    x: torch.Tensor, w_gate: torch.Tensor, w_up: torch.Tensor, w_down: torch.Tensor, dtype: torch.dtype = torch.float32
) -> torch.Tensor:
    """Plain-matmul MLP of x [M, H] in `dtype` (fp32 by default; float64 for tolerance checks) -> [M, H]."""
    _shapes(x, w_gate, w_up, w_down)
    xd, gd, ud, dd = (t.to(dtype) for t in (x, w_gate, w_up, w_down))
    return (silu_f32(xd @ gd.T) * (xd @ ud.T)) @ dd.T


def swiglu_hidden(x: torch.Tensor, w_gate: torch.Tensor, w_up: torch.Tensor) -> torch.Tensor:
    """h = silu(x·W_gateᵀ) ⊙ (x·W_upᵀ) in fp32 for x [M, H] -> [M, F] (matmul order within each f)."""
    xf = x.float()
    return silu_f32(xf @ w_gate.float().T) * (xf @ w_up.float().T)


def down_proj_slots(h: torch.Tensor, w_down: torch.Tensor, num_slots: int) -> torch.Tensor:
    """y = h·W_downᵀ for h [M, F] as one partial per slot (a batched matmul), added in slot order -> [M, H] fp32."""
    (m, ffn), hidden = h.shape, w_down.shape[0]
    length = ffn // len(slot_ranges(ffn, num_slots))
    per_slot_h = h.float().reshape(m, num_slots, length).transpose(0, 1)  # [S, M, L]
    per_slot_w = w_down.float().reshape(hidden, num_slots, length).permute(1, 2, 0)  # [S, L, H]
    return gather_slots(torch.bmm(per_slot_h, per_slot_w))


def fused_mlp_slots(
    x: torch.Tensor, w_gate: torch.Tensor, w_up: torch.Tensor, w_down: torch.Tensor, num_slots: int
) -> torch.Tensor:
    """The decode MLP of x [M, H] with the kernel's slot decomposition, vectorised for CPU -> [M, H] fp32.

    Slots are gathered in slot order as in the kernel, but sums within a slot use matmul order, so the bits
    may differ from the kernel's (they agree within fp32 tolerance; `fused_mlp_slots_with_h` has the kernel's order).
    """
    _shapes(x, w_gate, w_up, w_down)
    return down_proj_slots(swiglu_hidden(x, w_gate, w_up), w_down, num_slots)


def fma_f32(a: torch.Tensor, b: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
    """a·b + c rounded once to fp32, as the GPU's fma.rn.f32 (a, b, c fp32-valued, broadcastable).

    The product of two fp32 values is exact in float64; the float64 sum is then rounded to odd (TwoSum gives the
    exact error), and rounding that to fp32 is correctly rounded because float64 has more than 24 + 2 bits.
    """
    p = a.double() * b.double()
    cd = c.double().expand_as(p)
    s = p + cd
    p_part = s - cd
    err = (p - p_part) + (cd - (s - p_part))  # TwoSum: s + err == p + c exactly
    even = (s.view(torch.int64) & 1) == 0
    toward = torch.where(err > 0, torch.full_like(s, float("inf")), torch.full_like(s, float("-inf")))
    return torch.where((err != 0) & even, torch.nextafter(s, toward), s).float()


def reference_fc1_order(x: torch.Tensor, w_gate: torch.Tensor, w_up: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """gate, up [F] fp32 for x [H] as the kernel computes them: one fp32 FMA per k, k = 0..H−1 in order.

    Vectorised over f, sequential over k (H steps); for checks on small shapes.
    """
    hidden = x.shape[-1]
    weights = torch.stack((w_gate.float(), w_up.float()))  # [2, F, H]
    xf = x.float().reshape(hidden)
    acc = torch.zeros(weights.shape[:2], dtype=torch.float32, device=x.device)
    for k in range(hidden):
        acc = fma_f32(xf[k], weights[:, :, k], acc)
    return acc[0], acc[1]


def reference_fc2_order(h: torch.Tensor, w_down: torch.Tensor, num_slots: int) -> torch.Tensor:
    """y [H] fp32 for h [F] as the kernel computes it: per slot one fp32 FMA per f in f order, slots added in order.

    Vectorised over slots and n, sequential over the F / num_slots values of a slot; for checks.
    """
    ffn = h.shape[-1]
    length = ffn // len(slot_ranges(ffn, num_slots))
    per_slot_h = h.float().reshape(num_slots, length)  # [S, L]
    per_slot_w = w_down.float().reshape(-1, num_slots, length)  # [H, S, L]
    acc = torch.zeros(num_slots, per_slot_w.shape[0], dtype=torch.float32, device=h.device)
    for i in range(length):
        acc = fma_f32(per_slot_h[:, i : i + 1], per_slot_w[:, :, i].T, acc)
    return gather_slots(acc)


def fused_mlp_slots_with_h(
    x: torch.Tensor, w_gate: torch.Tensor, w_up: torch.Tensor, w_down: torch.Tensor, num_slots: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """(y [H], h [F]) for x [H] with the kernel's arithmetic in torch: an `MlpFn` for `check_fused_mlp` on CPU."""
    _shapes(x, w_gate, w_up, w_down)
    gate, up = reference_fc1_order(x, w_gate, w_up)
    h = silu_f32(gate) * up
    return reference_fc2_order(h, w_down, num_slots), h


def exact_inputs(hidden: int, ffn: int, seed: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """x [H] = i/8, w_gate, w_up [F, H] and w_down [H, F] = j/16, |i|, |j| <= 8: bf16 values, exact fp32 fc1."""
    gen = torch.Generator().manual_seed(seed)
    x = torch.randint(-8, 9, (hidden,), generator=gen).float() / 8
    w_gate, w_up = (torch.randint(-8, 9, (ffn, hidden), generator=gen).float() / 16 for _ in range(2))
    w_down = torch.randint(-8, 9, (hidden, ffn), generator=gen).float() / 16
    return x, w_gate, w_up, w_down


def random_inputs(hidden: int, ffn: int, seed: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """x [H] ~ N(0, 1) and weights ~ N(0, 1/fan_in), rounded to bf16 (the kernel's input type), as fp32."""
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(hidden, generator=gen)
    w_gate, w_up = (torch.randn(ffn, hidden, generator=gen) / hidden**0.5 for _ in range(2))
    w_down = torch.randn(hidden, ffn, generator=gen) / ffn**0.5
    return tuple(t.to(torch.bfloat16).float() for t in (x, w_gate, w_up, w_down))


def mlp_error_scale(x: torch.Tensor, w_gate: torch.Tensor, w_up: torch.Tensor, w_down: torch.Tensor) -> float:
    """max_n Σ_f |W_down[n, f]| · (|h_f| + 1.1·|up_f|·Σ_k|x_k·W_gate[f, k]| + |silu(gate_f)|·Σ_k|x_k·W_up[f, k]|).

    The fc2 terms plus the fc1 terms carried through silu (|silu'| <= 1.1) and the product, in float64.
    """
    xd, gd, ud, dd = (t.double() for t in (x, w_gate, w_up, w_down))
    gate, up = gd @ xd, ud @ xd
    silu = silu_f32(gate)
    per_f = (silu * up).abs() + SILU_SLOPE_MAX * up.abs() * (gd.abs() @ xd.abs()) + silu.abs() * (ud.abs() @ xd.abs())
    return float((dd.abs() @ per_f).max())


def _h_check(
    name: str, h: torch.Tensor, x: torch.Tensor, w_gate: torch.Tensor, w_up: torch.Tensor
) -> KernelCheckResult:
    """h within H_ULPS·eps·|h_ref| + tiny of h_ref = silu(gate)·up in float64 (gate, up from reference_fc1_order)."""
    gate, up = reference_fc1_order(x, w_gate, w_up)
    want = silu_f32(gate.double()) * up.double()
    diff = (h.double().to(want.device) - want).abs()
    bound = H_ULPS * FP32_EPS * want.abs() + FP32_TINY
    worst = int((diff / bound).argmax())
    max_abs, tolerance = float(diff[worst]), float(bound[worst])
    detail = f"vs silu(gate)·up in float64 on exact inputs, worst f={worst}, bound {H_ULPS}·eps·|h| + tiny"
    return KernelCheckResult(name, "h-tolerance", max_abs <= tolerance, max_abs, tolerance, detail)


def check_fused_mlp(
    mlp_fn: MlpFn, hidden: int, ffn: int, num_slots: int, device: torch.device | str = "cpu", seed: int = 0
) -> list[KernelCheckResult]:
    """Run the h-tolerance, bit-exact and tolerance checks of `mlp_fn` (x, w_gate, w_up, w_down, S) -> (y, h).

    Inputs reach `mlp_fn` as bf16 tensors on `device` (every value is bf16-representable).
    """
    slot_ranges(ffn, num_slots)
    name = f"fused_mlp_swiglu[num_slots={num_slots}]"
    shape = f"H={hidden}, F={ffn}"
    exact = tuple(t.to(device) for t in exact_inputs(hidden, ffn, seed))
    rand = tuple(t.to(device) for t in random_inputs(hidden, ffn, seed + 1))
    y_exact, h_exact = mlp_fn(*(t.to(torch.bfloat16) for t in exact), num_slots)
    y_rand, h_rand = mlp_fn(*(t.to(torch.bfloat16) for t in rand), num_slots)
    exact_diff = max(
        float((y.float() - reference_fc2_order(h.float(), inputs[3], num_slots)).abs().max())
        for y, h, inputs in ((y_exact, h_exact, exact), (y_rand, h_rand, rand))
    )
    want = mlp_reference(rand[0].unsqueeze(0), *rand[1:], dtype=torch.float64)[0]
    tol_diff = float((y_rand.double() - want).abs().max())
    bound = TOLERANCE_ULPS * FP32_EPS * mlp_error_scale(*rand)
    fc2 = f"vs reference_fc2_order of its own h, exact and random inputs, {shape}"
    return [
        _h_check(name, h_exact, *exact[:3]),
        KernelCheckResult(name, "bit-exact", exact_diff == 0.0, exact_diff, 0.0, fc2),
        KernelCheckResult(name, "tolerance", tol_diff <= bound, tol_diff, bound, f"vs float64 MLP, {shape}"),
    ]
