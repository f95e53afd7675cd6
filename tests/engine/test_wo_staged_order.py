"""The staged W_O kernel's arithmetic, emulated on the CPU from the very PTX it inlines; no GPU, no CuTe DSL.

`e2m1_word_ptx` and `e4m3_pair_ptx` are the kernel's decode: the tests run those strings through a small PTX
interpreter (numpy, the handful of instructions they use) and check every E2M1 code at every nibble position against
every finite E4M3 scale, bit for bit, signed zeros included. Then they replay the kernel's whole order for a slot
(tiles, `staged_tile_order`, x staged as x·g·2^14, one FMA per value) and compare with `reference_split_order`.
"""

from __future__ import annotations

import re

import numpy as np
import pytest
import torch

from engine.kernels import nvfp4
from engine.kernels.cute.wo_gemv import (
    BLOCK,
    E2M1_SHIFT,
    STAGED_TILES,
    e2m1_word_ptx,
    e4m3_pair_ptx,
    staged_tile_order,
    wo_gemv_shape,
)
from engine.kernels.wo_split import reference_split_order
from engine.kernels.wo_split_values import VALID_WO_SPLITS
from tests.support.kernel_inputs import order_sensitive_inputs

_OPERAND = re.compile(r"\{\$([rw])(\d+)\}")


def run_ptx(ptx: str, inputs: list[np.ndarray], outputs: int) -> list[np.ndarray]:
    """Interpret the kernel's inline PTX over uint32 arrays (one lane per element); returns the outputs' raw bits."""
    regs: dict[str, np.ndarray] = {f"$r{i}": v.astype(np.uint32) for i, v in enumerate(inputs)}

    def val(op: str) -> np.ndarray:
        op = _OPERAND.sub(r"$\1\2", op.strip())
        if op in regs:
            return regs[op]
        return np.full(inputs[0].shape, int(op, 0), dtype=np.uint32)

    def halves(v: np.ndarray) -> np.ndarray:
        return np.ascontiguousarray(v).view(np.float16).reshape(*v.shape, 2)

    for line in ptx.splitlines():
        line = line.strip().rstrip(";")
        if line in ("{", "}") or line.startswith(".reg"):
            continue
        opcode, rest = line.split(None, 1)
        if opcode == "mov.b32" and rest.startswith("{"):  # unpack: {lo, hi}, src
            lo, hi, src = re.fullmatch(r"\{(\w+), (\w+)\}, (.+)", rest).groups()
            regs[lo], regs[hi] = val(src) & 0xFFFF, val(src) >> 16
            continue
        dst, *ops = (_OPERAND.sub(r"$\1\2", o.strip()) for o in rest.split(","))
        a = [val(o) for o in ops]
        if opcode == "mov.b32":
            out = a[0]
        elif opcode == "shl.b32":
            out = a[0] << a[1]
        elif opcode == "shr.u32":
            out = a[0] >> a[1]
        elif opcode == "and.b32":
            out = a[0] & a[1]
        elif opcode == "or.b32":
            out = a[0] | a[1]
        elif opcode == "prmt.b32":  # default mode; a selector nibble with bit 3 set (sign replicate) is not used
            assert not np.any(a[2] & 0x8888), "prmt sign-replicate mode is not modelled"
            src = [(a[0] >> (8 * i)) & 0xFF for i in range(4)] + [(a[1] >> (8 * i)) & 0xFF for i in range(4)]
            out = sum(np.choose((a[2] >> (4 * i)) & 7, src) << np.uint32(8 * i) for i in range(4))
        elif opcode == "mul.rn.f16x2":  # an f16 product is exact in f32; one rounding to f16 is IEEE mul.rn
            prod = (halves(a[0]).astype(np.float32) * halves(a[1]).astype(np.float32)).astype(np.float16)
            out = prod.reshape(-1).view(np.uint32).reshape(a[0].shape)
        elif opcode == "cvt.f32.f16":
            out = (a[0].astype(np.uint16).view(np.float16)).astype(np.float32).view(np.uint32)
        else:
            raise AssertionError(f"PTX interpreter: {opcode} is not modelled")
        regs[dst] = out.astype(np.uint32)
    return [regs[f"$w{i}"] for i in range(outputs)]


def e4m3_values() -> torch.Tensor:
    """Every E4M3 byte as fp32 (NaN codes 0x7F and 0xFF included: callers skip them)."""
    return torch.arange(256, dtype=torch.uint8).view(torch.float8_e4m3fn).float()


FINITE_E4M3 = [b for b in range(256) if b & 0x7F != 0x7F]


@pytest.mark.parametrize("byte", range(4))
def test_scale_pair_is_the_e4m3_scale_as_f16_in_both_halves(byte):
    rng = np.random.default_rng(byte)
    scales = np.array(FINITE_E4M3, dtype=np.uint32)
    junk = rng.integers(0, 256, (len(scales), 4), dtype=np.uint32)  # the other three bytes must not leak in
    junk[:, byte] = scales
    words = junk[:, 0] | junk[:, 1] << 8 | junk[:, 2] << 16 | junk[:, 3] << 24
    (pair,) = run_ptx(e4m3_pair_ptx(byte), [words], 1)
    want = e4m3_values()[FINITE_E4M3].numpy().astype(np.float16).view(np.uint16).astype(np.uint32)
    assert np.array_equal(pair & 0xFFFF, want) and np.array_equal(pair >> 16, want)


def test_word_decode_is_e2m1_times_scale_times_2_to_the_minus_14_for_every_code_and_scale():
    """16 words put every code at every nibble position; with every finite scale, each output equals the fp32
    e2m1·scale·2^-14 bit for bit (so -0 for code 8, and the f16 subnormal products survive)."""
    codes = (np.arange(16)[:, None] + np.arange(8)[None, :]) % 16  # word c holds codes c, c+1, ..., c+7
    words = np.sum(codes.astype(np.uint32) << (4 * np.arange(8, dtype=np.uint32)), axis=1, dtype=np.uint32)
    scale_f16 = e4m3_values()[FINITE_E4M3].numpy().astype(np.float16).view(np.uint16).astype(np.uint32)
    w = np.repeat(words, len(scale_f16))
    pair = np.tile(scale_f16 | scale_f16 << 16, len(words))
    outs = run_ptx(e2m1_word_ptx(), [w, pair], 8)
    e2m1 = nvfp4.e2m1_decode(torch.from_numpy(codes.astype(np.uint8)))  # [16 words, 8 positions]
    scale = e4m3_values()[FINITE_E4M3]
    for j in range(8):
        want = (e2m1[:, j : j + 1] * scale[None, :] * 2.0**-E2M1_SHIFT).reshape(-1)  # exact in fp32
        got = torch.from_numpy(outs[j].view(np.float32).copy())
        assert torch.equal(got.view(torch.int32), want.view(torch.int32)), f"nibble {j}"


@pytest.mark.parametrize("tile", STAGED_TILES)
def test_tile_order_walks_k_in_order_one_word_at_a_time(tile):
    order = staged_tile_order(tile)
    assert [k for *_, k in order] == list(range(0, tile, 8))
    for q, h, w, k in order:  # word 4q + 2h + w of the row's tile; block 2q + h has the scale of values k..k+7
        assert k == 8 * (4 * q + 2 * h + w) and (2 * q + h) == k // BLOCK


def emulate_staged(x: torch.Tensor, t: nvfp4.Nvfp4Tensor, num_kv_heads: int, wo_split: int) -> torch.Tensor:
    """The staged kernel's arithmetic for every row at once: per slot, tiles in order, `staged_tile_order` inside a
    tile, each word decoded by the kernel's PTX, acc += xs[k]·w in fp32; then the slots added in slot order."""
    n, half_k = t.packed.shape
    shape = wo_gemv_shape(half_k * 2, n, num_kv_heads, wo_split)
    assert shape.staged
    words = t.packed.contiguous().view(torch.int32).numpy().view(np.uint32)
    scale_words = t.scales.contiguous().view(torch.int32).numpy().view(np.uint32)
    x_scale = torch.tensor(t.global_scale, dtype=torch.float32) * 2.0**E2M1_SHIFT
    xs = x.float() * x_scale  # what the kernel stages in shared memory
    partials = []
    for slot in range(shape.slots):
        acc = torch.zeros(n, dtype=torch.float32)
        for tile in range(shape.slot_len // shape.tile_values):
            k0 = slot * shape.slot_len + tile * shape.tile_values
            for *_, k in staged_tile_order(shape.tile_values):
                block = (k0 + k) // BLOCK
                (pair,) = run_ptx(e4m3_pair_ptx(block % 4), [scale_words[:, block // 4]], 1)
                vals = run_ptx(e2m1_word_ptx(), [words[:, (k0 + k) // 8], pair], 8)
                for j in range(8):
                    acc = acc + xs[k0 + k + j] * torch.from_numpy(vals[j].view(np.float32).copy())
        partials.append(acc)
    out = partials[0]
    for p in partials[1:]:
        out = out + p
    return out


@pytest.mark.parametrize("wo_split", VALID_WO_SPLITS)
def test_emulated_staged_kernel_equals_reference_split_order_bit_for_bit(wo_split):
    """K = 1024, 2 KV heads: slots of 512 / wo_split values, so the 256-, 128- and 64-value tiles all run."""
    k, n, heads = 1024, 24, 2
    x, t, dense = order_sensitive_inputs(k, n, seed=11)
    want = reference_split_order(x.float(), dense, heads, wo_split)[0]
    got = emulate_staged(x[0], t, heads, wo_split)
    assert torch.equal(got.view(torch.int32), want.view(torch.int32)), (got - want).abs().max()


def test_the_order_sensitive_inputs_do_tell_summation_orders_apart():
    """Without this, the bit-exact comparison above could not see a wrong order inside a slot."""
    x, _, dense = order_sensitive_inputs(1024, 24, seed=11)
    forward = reference_split_order(x.float(), dense, 2, 1)[0]
    backward = reference_split_order(x.float().flip(-1), dense.flip(0), 2, 1)[0]
    assert not torch.equal(forward, backward)
    assert not torch.equal(forward, reference_split_order(x.float(), dense, 2, 2)[0])


def test_issue_shape_runs_staged_with_the_largest_tile_that_divides_each_slot():
    tiles = {s: wo_gemv_shape(6144, 5120, 4, s).tile_values for s in VALID_WO_SPLITS}
    assert tiles == {1: 256, 2: 256, 4: 128, 8: 64}
    assert all(wo_gemv_shape(6144, 5120, 4, s).row_blocks == 160 for s in VALID_WO_SPLITS)
    tiny = {s: wo_gemv_shape(256, 256, 2, s).staged for s in VALID_WO_SPLITS}  # slots of 128/split values
    assert tiny == {1: True, 2: True, 4: False, 8: False}  # 32 and 16: the direct kernel
