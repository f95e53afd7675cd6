"""Paged split-KV decode attention: the torch reference on CPU; the CuTe DSL kernel compiles without a GPU."""

from __future__ import annotations

import itertools
import math
import re

import pytest
import torch
import torch.nn.functional as F

from engine.kernels.cute.build import CuteUnavailableError
from engine.kernels.cute.paged_attention import (
    DYNAMIC_MODES,
    TENSOR_ARGS,
    compile_paged_attention,
    paged_attention,
    paged_attention_shape,
    runtime_tensor,
)
from engine.kernels.paged_attention import (
    PagedAttentionError,
    ceil_div,
    combine_splits,
    paged_attention_reference,
    split_kv_attention,
    split_kv_partials,
    split_token_ranges,
)

H, HKV, D, PAGE = 8, 2, 32, 16  # the tiny model's attention shape
SCALE = D**-0.5
SPLITS = (1, 2, 4, 7, 40)  # 40: more splits than any sequence here has pages
LENS = [1, PAGE - 1, PAGE, PAGE + 1, 300]
TOL = {"atol": 2e-6, "rtol": 1e-5}
needs_gpu = pytest.mark.skipif(not torch.cuda.is_available(), reason="launching the kernel needs a CUDA GPU")


def paged_inputs(lens, *, seed=0, heads=H, kv_heads=HKV, dim=D, dtype=torch.float32, device="cpu", v_value=None):
    """Random q and pools with spare pages, and a shuffled, non-contiguous block table with one spare column."""
    gen = torch.Generator().manual_seed(seed)
    blocks = max(ceil_div(n, PAGE) for n in lens) + 1
    num_pages = len(lens) * blocks + 5
    q = torch.randn(len(lens), heads, dim, generator=gen)
    k = torch.randn(num_pages, PAGE, kv_heads, dim, generator=gen)
    v = torch.randn(num_pages, PAGE, kv_heads, dim, generator=gen) if v_value is None else torch.full_like(k, v_value)
    table = torch.randperm(num_pages, generator=gen)[: len(lens) * blocks].view(len(lens), blocks).to(torch.int32)
    seq_lens = torch.tensor(lens, dtype=torch.int32)
    return [t.to(device) for t in (q.to(dtype), k.to(dtype), v.to(dtype), table, seq_lens)]


# --- torch reference -------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("seq_len", "splits", "expected"),
    [
        (1, 4, [(0, 1), (1, 1), (1, 1), (1, 1)]),
        (16, 1, [(0, 16)]),
        (33, 2, [(0, 32), (32, 33)]),  # 3 pages, 2 per split
        (100, 4, [(0, 32), (32, 64), (64, 96), (96, 100)]),  # 7 pages, 2 per split
        (48, 7, [(0, 16), (16, 32), (32, 48), (48, 48), (48, 48), (48, 48), (48, 48)]),
        (0, 2, [(0, 0), (0, 0)]),
    ],
)
def test_split_token_ranges(seq_len, splits, expected):
    assert split_token_ranges(seq_len, splits, 16) == expected


def test_split_token_ranges_tile_the_sequence_on_page_boundaries():
    for seq_len in range(1, 70):
        for splits in (1, 2, 3, 5, 8):
            ranges = split_token_ranges(seq_len, splits, 8)
            assert ranges[0][0] == 0 and ranges[-1][1] == seq_len and len(ranges) == splits
            assert all(a[1] == b[0] for a, b in itertools.pairwise(ranges))
            assert all(t0 % 8 == 0 or t0 == t1 == seq_len for t0, t1 in ranges)


@pytest.mark.parametrize("splits", SPLITS)
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_split_kv_matches_reference(splits, dtype):
    args = paged_inputs(LENS, seed=splits, dtype=dtype)
    expected = paged_attention_reference(*args, SCALE)
    out = split_kv_attention(*args, SCALE, splits)
    assert out.dtype == torch.float32 and out.shape == (len(LENS), H, D)
    torch.testing.assert_close(out, expected, **TOL)


def test_reference_matches_torch_sdpa():
    args = paged_inputs(LENS, seed=3)
    q, k_pages, v_pages, table, _ = args
    out = paged_attention_reference(*args, SCALE)
    for b, length in enumerate(LENS):
        pages = table[b, : ceil_div(length, PAGE)].long()
        k, v = (p[pages].reshape(-1, HKV, D)[:length].transpose(0, 1)[None] for p in (k_pages, v_pages))
        expected = F.scaled_dot_product_attention(q[b, :, None][None], k, v, scale=SCALE, enable_gqa=True)
        torch.testing.assert_close(out[b], expected[0, :, 0], **TOL)


def test_query_head_reads_kv_head_h_div_group():
    q, k, v, table, seq_lens = paged_inputs([37, 5], seed=4)
    v = torch.ones_like(v) * (2.0 ** torch.arange(HKV)).view(1, 1, HKV, 1)  # KV head j holds 2^j: exact sums
    out = split_kv_attention(q, k, v, table, seq_lens, SCALE, 3)
    expected = (2.0 ** (torch.arange(H) // (H // HKV))).view(1, H, 1).expand_as(out)
    assert torch.equal(out, expected)


@pytest.mark.parametrize("splits", SPLITS)
def test_v_all_ones_gives_exactly_one(splits):
    args = paged_inputs(LENS, seed=10 + splits, v_value=1.0)
    assert torch.equal(split_kv_attention(*args, SCALE, splits), torch.ones(len(LENS), H, D))


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_single_token_gives_its_v(dtype):
    q, k, v, table, seq_lens = paged_inputs([1, 1], seed=5, dtype=dtype)
    out = split_kv_attention(q, k, v, table, seq_lens, SCALE, 4)
    for b in range(2):
        token_v = v[table[b, 0].long(), 0].float()  # [Hkv, D]
        assert torch.equal(out[b], token_v.repeat_interleave(H // HKV, dim=0))


def with_stale_nan(k_pages, v_pages, table, seq_lens):
    """Copies of the pools with NaN in every row that holds none of the sequences' tokens."""
    live = torch.zeros(k_pages.shape[:2], dtype=torch.bool)
    for b, length in enumerate(seq_lens.tolist()):
        for t in range(length):
            live[table[b, t // PAGE], t % PAGE] = True
    return [p.masked_fill(~live[:, :, None, None], float("nan")) for p in (k_pages, v_pages)]


@pytest.mark.parametrize("splits", [1, 4])
def test_stale_nan_outside_the_sequences_never_reaches_the_output(splits):
    q, k, v, table, seq_lens = paged_inputs([5, 40, 16], seed=8)  # 5: its only page is mostly stale
    table[:, -1] = -7  # unused block-table entries may hold anything
    stale_k, stale_v = with_stale_nan(k, v, table, seq_lens)
    expected = split_kv_attention(q, k, v, table, seq_lens, SCALE, splits)
    assert torch.equal(split_kv_attention(q, stale_k, stale_v, table, seq_lens, SCALE, splits), expected)
    assert torch.isfinite(paged_attention_reference(q, stale_k, stale_v, table, seq_lens, SCALE)).all()


def test_repeated_runs_give_identical_bits():
    args = paged_inputs(LENS, seed=6)
    first = split_kv_attention(*args, SCALE, 4)
    for _ in range(3):
        assert torch.equal(split_kv_attention(*args, SCALE, 4), first)


def test_partials_are_attention_over_each_split_range():
    q, k, v, table, seq_lens = paged_inputs([70, 16, 3], seed=7)
    splits = 3
    partial, lse = split_kv_partials(q, k, v, table, seq_lens, SCALE, splits)
    assert partial.shape == (3, H, splits, D) and lse.shape == (3, H, splits)
    for b, length in enumerate(seq_lens.tolist()):
        for s, (t0, t1) in enumerate(split_token_ranges(length, splits, PAGE)):
            if t0 == t1:
                assert torch.all(lse[b, :, s] == float("-inf")) and torch.all(partial[b, :, s] == 0)
                continue
            sub_table = table[b : b + 1, t0 // PAGE :]  # the split starts on a page boundary
            sub_len = torch.tensor([t1 - t0], dtype=torch.int32)
            expected = paged_attention_reference(q[b : b + 1], k, v, sub_table, sub_len, SCALE)
            torch.testing.assert_close(partial[b, :, s], expected[0], **TOL)
            keys = k[sub_table[0].long()].reshape(-1, HKV, D)[: t1 - t0].repeat_interleave(H // HKV, dim=1)
            scores = torch.einsum("hd,thd->ht", q[b], keys) * SCALE
            torch.testing.assert_close(lse[b, :, s], torch.logsumexp(scores, dim=-1), **TOL)


def test_combine_splits_weights_by_exp_lse_and_skips_empty_splits():
    o0, o1 = torch.full((1, 1, 1, 2), 1.0), torch.full((1, 1, 1, 2), 5.0)
    partial = torch.cat((o0, torch.zeros(1, 1, 1, 2), o1), dim=2)
    lse = torch.tensor([[[0.0, float("-inf"), math.log(3.0)]]])
    out = combine_splits(partial, lse)  # weights 1, 0, 3: (1 + 3·5) / 4 = 4
    torch.testing.assert_close(out, torch.full((1, 1, 2), 4.0))


def _bad(args, **changes):
    names = ("q", "k_pages", "v_pages", "block_table", "seq_lens")
    values = dict(zip(names, args, strict=True)) | changes
    return [values[n] for n in names]


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda a: _bad(a, q=a[0][0]), r"q must be \[batch, heads, head_dim\]"),
        (lambda a: _bad(a, k_pages=a[1][0]), "k_pages must be"),
        (lambda a: _bad(a, v_pages=a[2][:, :8]), "v_pages must have k_pages' shape"),
        (lambda a: _bad(a, q=a[0][:, :, :16]), "head_dim"),
        (lambda a: _bad(a, q=a[0][:, :3]), "not a multiple of the 2 kv_heads"),
        (lambda a: _bad(a, block_table=a[3][:1]), "block_table must be"),
        (lambda a: _bad(a, block_table=a[3].float()), "block_table must be int32 or int64"),
        (lambda a: _bad(a, seq_lens=a[4][:1]), "seq_lens must be"),
        (lambda a: _bad(a, seq_lens=torch.tensor([5, 0], dtype=torch.int32)), r"seq_lens\[1\] = 0"),
        (lambda a: _bad(a, seq_lens=torch.tensor([5, 999], dtype=torch.int32)), r"seq_lens\[1\] = 999 is outside"),
        (lambda a: _bad(a, block_table=a[3] + 1000), r"block_table\[0, 0\] = \d+ is not a page id"),
    ],
)
def test_bad_arguments_raise_naming_the_argument(change, message):
    args = paged_inputs([20, 5])
    with pytest.raises(PagedAttentionError, match=message):
        split_kv_attention(*change(args), SCALE, 2)
    with pytest.raises(PagedAttentionError, match=message):
        paged_attention_reference(*change(args), SCALE)


@pytest.mark.parametrize("splits", [0, -1, 2.0, True])
def test_bad_num_splits_raises(splits):
    with pytest.raises(PagedAttentionError, match="num_splits must be a positive integer"):
        split_kv_attention(*paged_inputs([4]), SCALE, splits)


# --- CuTe DSL kernel -------------------------------------------------------------------------------------------

COMPILE_VARIANTS = [
    ("sm_121a", (H, HKV, D, PAGE, 1)),
    ("sm_121a", (H, HKV, D, PAGE, 4)),
    ("sm_121a", (24, 4, 256, PAGE, 8)),  # production-like: 6 query heads per KV head, D 256
    ("sm_90a", (H, HKV, D, PAGE, 4)),
    ("sm_90a", (24, 4, 256, PAGE, 8)),
]


@pytest.fixture
def cute_dsl():
    reason = "nvidia-cutlass-dsl is not installed: pip install nvidia-cutlass-dsl==4.8.1"
    return pytest.importorskip("cutlass", reason=reason)


@pytest.mark.parametrize(("arch", "config"), COMPILE_VARIANTS)
def test_compiles_with_128_bit_loads(cute_dsl, tmp_path, arch, config):
    report = compile_paged_attention(*config, arch, tmp_path / arch)
    print(
        f"{arch} {report.variant}: {report.registers} registers, cubin {report.cubin_bytes} B, "
        f"128-bit loads {report.vectorized_128}, compile {report.compile_seconds:.2f} s"
    )
    assert report.kernel == "paged_decode_attention" and report.arch == arch
    assert report.variant.endswith(f"splits={config[-1]}")
    assert report.cubin_path.stat().st_size == report.cubin_bytes > 0
    assert report.vectorized_128
    ptx = report.ptx_path.read_text()
    assert len(re.findall(r"ld\.global\.v4\.b32[^\n]*\n\s*st\.shared\.v4\.b32", ptx)) >= 2  # K and V rows
    assert "atom.global.acq_rel" in ptx and "fence.acq_rel.gpu" in ptx
    assert "atom.global.add.f32" not in ptx and "red.global.add.f32" not in ptx  # no float atomics
    if report.registers is None:
        print(f"register count unreadable from {report.cubin_path.name}'s .nv.info; not checked")
    else:
        assert report.registers > 0


@pytest.mark.parametrize(
    ("config", "message"),
    [
        ((H, HKV, 36, PAGE, 4), "head_dim=36 must be a multiple of 8"),
        ((H, 3, D, PAGE, 4), "must be a positive multiple of kv_heads=3"),
        ((H, HKV, D, PAGE, 0), "num_splits must be a positive integer"),
        ((8, 1, 256, 64, 4), "shared memory"),
    ],
)
def test_refuses_configurations_it_cannot_compile(config, message):
    with pytest.raises(PagedAttentionError, match=message):
        paged_attention_shape(*config)


@pytest.mark.parametrize("batch", [1, 3])
def test_launch_tensors_match_the_compiled_signature(cute_dsl, batch):
    from cutlass.cute.typing import SymInt

    from engine.kernels.cute.paged_attention import _host_args

    shape = paged_attention_shape(H, HKV, D, PAGE, 4)
    fakes = _host_args(shape)
    fakes = [*fakes[:5], *fakes[6:-1]]  # the tensors: scale and the stream left out
    q, k, v, table, seq_lens = paged_inputs([5] * batch, dtype=torch.bfloat16)
    tensors = dict(zip(TENSOR_ARGS[:5], (q, k, v, table, seq_lens), strict=True))
    tensors |= {
        "partial": torch.zeros(batch, H, 4, D),
        "lse": torch.zeros(batch, H, 4),
        "counter": torch.zeros(batch, HKV, dtype=torch.int32),
        "out": torch.zeros(batch, H, D),
    }
    for name, fake in zip(TENSOR_ARGS, fakes, strict=True):
        shape_text = ",".join("?" if isinstance(n, SymInt) else str(n) for n in fake.shape)
        stride_text = ",".join("?{i64}" if isinstance(n, SymInt) else str(n) for n in fake.stride)
        dtype, align, layout = runtime_tensor(tensors[name], name).__cache_key__
        assert (dtype, align) == (fake.element_type, 16), name
        assert layout.endswith(f"({shape_text}):({stride_text})"), (name, layout, DYNAMIC_MODES[name])


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the error raised on machines without CUDA")
def test_launch_without_gpu_says_a_gpu_is_needed():
    args = paged_inputs([5], dtype=torch.bfloat16)
    with pytest.raises(CuteUnavailableError, match="needs a CUDA GPU"):
        paged_attention(*args, SCALE, 4)


@needs_gpu
@pytest.mark.parametrize(("splits", "lens"), [(1, LENS), (4, LENS), (7, [1, 2000, 33]), (40, [300] * 5)])
def test_kernel_matches_reference(cute_dsl, splits, lens):
    args = paged_inputs(lens, seed=splits, dtype=torch.bfloat16, device="cuda")
    out = paged_attention(*args, SCALE, splits)
    torch.testing.assert_close(out, paged_attention_reference(*args, SCALE), atol=5e-5, rtol=1e-4)


@needs_gpu
@pytest.mark.parametrize("splits", [1, 4, 7])
def test_kernel_v_all_ones_gives_exactly_one(cute_dsl, splits):
    args = paged_inputs(LENS, seed=20, dtype=torch.bfloat16, device="cuda", v_value=1.0)
    assert torch.equal(paged_attention(*args, SCALE, splits), torch.ones(len(LENS), H, D, device="cuda"))


@needs_gpu
def test_kernel_never_reads_rows_outside_the_sequences(cute_dsl):
    q, k, v, table, seq_lens = paged_inputs([5, 40, 16], seed=22, dtype=torch.bfloat16)
    table[:, -1] = -7
    stale_k, stale_v = with_stale_nan(k, v, table, seq_lens)
    clean = paged_attention(*(t.cuda() for t in (q, k, v, table, seq_lens)), SCALE, 4)
    stale = paged_attention(*(t.cuda() for t in (q, stale_k, stale_v, table, seq_lens)), SCALE, 4)
    assert torch.equal(stale, clean)


@needs_gpu
def test_kernel_gives_the_same_bits_on_repeat(cute_dsl):
    args = paged_inputs(LENS, seed=21, dtype=torch.bfloat16, device="cuda", heads=24, kv_heads=4, dim=256)
    first = paged_attention(*args, 256**-0.5, 8)
    for _ in range(3):  # each launch only combines if the one before reset the arrival counters
        assert torch.equal(paged_attention(*args, 256**-0.5, 8), first)
    torch.testing.assert_close(first, paged_attention_reference(*args, 256**-0.5), atol=5e-5, rtol=1e-4)


@needs_gpu
@pytest.mark.parametrize("splits", [1, 4, 8])
def test_kernel_at_the_bench_shape_matches_the_reference_and_repeats(cute_dsl, splits):
    """The bench's attention shape (GQA 24 / 4, D 256, 4096 tokens), two sequences ending mid-page."""
    args = paged_inputs([4096, 4000, 1, 4095], seed=30 + splits, dtype=torch.bfloat16, device="cuda",
                        heads=24, kv_heads=4, dim=256)  # fmt: skip
    first, second = (paged_attention(*args, 256**-0.5, splits) for _ in range(2))
    assert torch.equal(first, second)
    torch.testing.assert_close(first, paged_attention_reference(*args, 256**-0.5), atol=5e-5, rtol=1e-4)
