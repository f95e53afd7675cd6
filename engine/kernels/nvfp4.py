"""NVFP4: 4-bit E2M1 values, one FP8 E4M3 scale per 16 consecutive elements of K, and one FP32 global scale.

A weight `w` of shape [N, K] (rows = output features, K contiguous, as nn.Linear stores it) becomes
- `packed` uint8 [N, K/2]: element 2i in the low nibble, 2i+1 in the high nibble of byte i;
- `scales` float8_e4m3fn [N, K/16];
- `global_scale` float32: w ≈ e2m1 · scale · global_scale.

E2M1 codes: bit 3 is the sign, bits 0-2 index the magnitudes 0, 0.5, 1, 1.5, 2, 3, 4, 6.
Quantizing picks global_scale = amax / (6 · 448) so every block scale fits E4M3, rounds each block
scale to E4M3, then each value to the nearest E2M1 magnitude (ties to the even code). Decoding is
exact: every E2M1 value times an E4M3 scale is exactly representable in float32, and so is the
product with a power-of-two global scale.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

BLOCK = 16
E2M1_MAX = 6.0
E4M3_MAX = float(torch.finfo(torch.float8_e4m3fn).max)  # 448
E2M1_VALUES = torch.tensor([0.0, 0.5, 1.0, 1.5, 2.0, 3.0, 4.0, 6.0])
SIGN_BIT = 8


class Nvfp4Error(ValueError):
    """A shape or value NVFP4 cannot hold; the message names the problem."""


@dataclass(frozen=True)
class Nvfp4Tensor:
    """An NVFP4-encoded [N, K] matrix."""

    packed: torch.Tensor  # uint8 [N, K/2]
    scales: torch.Tensor  # float8_e4m3fn [N, K/16]
    global_scale: float

    @property
    def shape(self) -> tuple[int, int]:
        """The decoded shape [N, K]."""
        return self.packed.shape[0], self.packed.shape[1] * 2

    def payload_bytes(self) -> int:
        """Bytes a kernel reads for the weight: packed values plus block scales (the global scale is negligible)."""
        return self.packed.numel() + self.scales.numel()


def pack_codes(codes: torch.Tensor) -> torch.Tensor:
    """uint8 codes 0..15 of shape [..., K] (K even) -> bytes [..., K/2], element 2i in the low nibble."""
    if codes.shape[-1] % 2:
        raise Nvfp4Error(f"the last dimension must be even to pack two codes per byte, got {codes.shape[-1]}")
    if codes.numel() and int(codes.max()) > 15:
        raise Nvfp4Error("codes must be 0..15")
    c = codes.to(torch.uint8)
    return c[..., 0::2] | (c[..., 1::2] << 4)


def unpack_codes(packed: torch.Tensor) -> torch.Tensor:
    """Inverse of pack_codes: bytes [..., K/2] -> codes [..., K]."""
    low, high = packed & 0x0F, packed >> 4
    return torch.stack((low, high), dim=-1).flatten(-2)


def e2m1_decode(codes: torch.Tensor) -> torch.Tensor:
    """E2M1 codes -> float32 values (sign bit 3, magnitude index bits 0-2)."""
    magnitude = E2M1_VALUES.to(codes.device)[(codes & 7).long()]
    return torch.where((codes & SIGN_BIT) != 0, -magnitude, magnitude)


def e2m1_encode(values: torch.Tensor) -> torch.Tensor:
    """float values (already divided by their scale) -> nearest E2M1 codes, ties to the even code; clamps at ±6.

    The sign bit follows the input's sign bit, so -0 (and a negative value that rounds to 0) is code 8.
    """
    grid = E2M1_VALUES.to(values.device)
    mag = values.abs().clamp(max=E2M1_MAX)
    index = torch.searchsorted(grid, mag.contiguous()).clamp(max=len(grid) - 1)  # first grid value >= mag
    lower = (index - 1).clamp(min=0)
    d_up, d_low = grid[index] - mag, mag - grid[lower]
    pick_low = (d_low < d_up) | ((d_low == d_up) & (lower % 2 == 0))
    code = torch.where(pick_low, lower, index).to(torch.uint8)
    return code | (torch.signbit(values).to(torch.uint8) * SIGN_BIT)  # -0 keeps its sign, as cvt does


def quantize(w: torch.Tensor, global_scale: float | None = None) -> Nvfp4Tensor:
    """Encode a [N, K] matrix (K a multiple of 16) as NVFP4; `global_scale` defaults to amax / (6·448)."""
    if w.dim() != 2 or w.shape[1] % BLOCK:
        raise Nvfp4Error(f"NVFP4 needs a [N, K] matrix with K a multiple of {BLOCK}, got {tuple(w.shape)}")
    wf = w.float()
    if global_scale is None:
        amax = float(wf.abs().max()) if wf.numel() else 0.0
        global_scale = amax / (E2M1_MAX * E4M3_MAX) if amax > 0 else 1.0
    if not global_scale > 0:
        raise Nvfp4Error(f"global_scale must be above 0, got {global_scale}")
    blocks = wf.view(w.shape[0], -1, BLOCK)
    block_amax = blocks.abs().amax(dim=-1)
    scales = (block_amax / (E2M1_MAX * global_scale)).clamp(max=E4M3_MAX).to(torch.float8_e4m3fn)
    divisor = scales.float().unsqueeze(-1) * global_scale
    scaled = torch.where(divisor > 0, blocks / torch.where(divisor > 0, divisor, 1.0), torch.zeros_like(blocks))
    codes = e2m1_encode(scaled).view(w.shape)
    return Nvfp4Tensor(pack_codes(codes), scales, float(global_scale))


def dequantize(t: Nvfp4Tensor) -> torch.Tensor:
    """NVFP4 -> float32 [N, K]: e2m1 · block scale · global scale (exact in float32)."""
    values = e2m1_decode(unpack_codes(t.packed)).view(t.packed.shape[0], -1, BLOCK)
    return (values * t.scales.float().unsqueeze(-1) * t.global_scale).view(t.shape)
