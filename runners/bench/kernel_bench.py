"""`gb10-console bench kernels`: time every decode kernel against torch baselines, after a correctness gate.

Per kernel and shape: median / p10 / p90 µs per call with cold caches (inputs rotated over ≥ 3× the
L2 or last-level cache; on CUDA also a read of twice the L2 before every call, and the launch overhead
hidden behind a GPU sleep, see `kernel_timing`), the payload bytes a call must move, GB/s, % of the device
copy bandwidth measured in the same run, speedup over a torch baseline (torch.matmul on dequantized bf16
weights for W_O) and, for W_O, over wo_split=1. The implementation timed is the CuTe DSL kernel where a
CUDA GPU and the DSL are present (W_O: one `wo_gemv` launch per call, gated and timed alike; the GPU tests
cover the engine's per-row wrapper), else the torch path the engine runs on CPU. A variant whose correctness
gate fails is reported, not timed.
"""

from __future__ import annotations

import importlib.metadata
import platform
from collections.abc import Callable
from dataclasses import asdict, dataclass, field

import torch
import torch.nn.functional as F

from engine.kernels import fused_mlp as mlp_ref
from engine.kernels import nvfp4
from engine.kernels import paged_attention as attn_ref
from engine.kernels.checks import KernelCheckResult, check_wo_gemv
from engine.kernels.wo_nvfp4 import WoKernel, WoWeight, prepare_wo, wo_torch
from engine.kernels.wo_split_values import VALID_WO_SPLITS
from engine.kv_pages import PAGE_SIZE
from runners.bench.kernel_timing import (
    FLUSH_FACTOR,
    Timing,
    cache_bytes,
    copy_bandwidth_gbs,
    rotation_count,
    time_calls,
)

ATTENTION_TOLERANCE = 1e-3  # |out - fp32 reference| on the same (bf16-valued) inputs, outputs are O(1)


@dataclass(frozen=True)
class Sizes:
    """The shapes one bench run uses."""

    name: str
    wo: tuple[int, int, int]  # K, N, num_kv_heads
    attention: tuple[int, int, int, int, int]  # batch, heads, kv_heads, head_dim, seq_len
    kv_splits: tuple[int, ...]
    mlp: tuple[int, int, int]  # hidden, ffn, num_slots


SIZES = {
    # The shapes: Qwen3.5-27B-like W_O (K = 24 heads · 256), its attention and MLP.
    "issue": Sizes("issue", (6144, 5120, 4), (4, 24, 4, 256, 4096), (1, 4, 8), (5120, 17408, 136)),
    # The embedded engine's tiny model (configs/engine-tiny.toml), fast enough for CI.
    "tiny": Sizes("tiny", (256, 256, 2), (4, 8, 2, 32, 512), (1, 4), (256, 768, 6)),
}


@dataclass
class BenchRow:
    """One timed (or refused) kernel variant."""

    kernel: str
    impl: str
    variant: str
    correctness: str  # "pass", "baseline" or what failed
    payload_bytes: int
    median_us: float | None = None
    p10_us: float | None = None
    p90_us: float | None = None
    gbs: float | None = None
    pct_copy_bw: float | None = None
    speedup_vs_baseline: float | None = None
    speedup_vs_split1: float | None = None
    host_us: float | None = None  # CUDA: median host time to issue one call (the launch path, not in median_us)
    launch_hidden: bool | None = None  # CUDA: every timed call was issued before the GPU reached its start event

    def timed(self, t: Timing, copy_gbs: float) -> BenchRow:
        """Fill in the timing columns from `t`."""
        self.median_us, self.p10_us, self.p90_us = t.median_us, t.p10_us, t.p90_us
        self.host_us, self.launch_hidden = t.host_us, t.launch_hidden
        self.gbs = self.payload_bytes / (t.median_us * 1e-6) / 1e9
        self.pct_copy_bw = 100.0 * self.gbs / copy_gbs
        return self


@dataclass
class BenchReport:
    """Everything one `bench kernels` run measured, with what it ran on."""

    meta: dict
    copy_bandwidth_gbs: float
    rows: list[BenchRow] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """True when every variant passed its correctness gate."""
        return all(r.correctness in ("pass", "baseline") for r in self.rows)

    def as_dict(self) -> dict:
        """JSON form."""
        return {
            "meta": self.meta,
            "copy_bandwidth_gbs": self.copy_bandwidth_gbs,
            "rows": [asdict(r) for r in self.rows],
        }


@dataclass(frozen=True)
class Impl:
    """The kernels under test: the CuTe DSL ones on a GPU, else the torch paths the engine runs on CPU."""

    name: str
    device: torch.device
    wo: WoKernel
    attention: Callable[..., torch.Tensor]
    mlp: Callable[..., tuple[torch.Tensor, torch.Tensor]]  # (x [H], w_gate, w_up, w_down, slots) -> (y, h)
    dtype: torch.dtype  # what KV pages and MLP weights are stored in


def pick_impl() -> Impl:
    """CuTe on CUDA when the DSL imports, else torch on CPU."""
    if torch.cuda.is_available():
        from engine.kernels.backend import cute_kernels
        from engine.kernels.cute.build import CuteUnavailableError
        from engine.kernels.cute.fused_mlp import fused_mlp

        try:
            kernels = cute_kernels()
            return Impl("cute", torch.device("cuda"), _cute_wo_one_row, kernels.attention, fused_mlp, torch.bfloat16)
        except CuteUnavailableError:  # CUDA without the DSL: time the torch paths on CPU
            pass
    cpu = torch.device("cpu")
    return Impl("torch", cpu, wo_torch, attn_ref.split_kv_attention, mlp_ref.fused_mlp_slots_with_h, torch.float32)


def _cute_wo_one_row(x: torch.Tensor, weight: WoWeight, num_kv_heads: int, wo_split: int) -> torch.Tensor:
    """One `wo_gemv` launch for x [1, K]: the engine's CuTe W_O without its per-row stack (a copy kernel) around it."""
    from engine.kernels.cute.wo_gemv import wo_gemv

    if x.shape[0] != 1:
        raise ValueError(f"the bench times W_O at batch 1, got x {tuple(x.shape)}")
    t = weight.nvfp4
    return wo_gemv(x[0].to(torch.bfloat16), t.packed, t.scales, t.global_scale, num_kv_heads, wo_split).unsqueeze(0)


def run_meta(impl: Impl, sizes: Sizes, seed: int, iters: int) -> dict:
    """Versions, device, arch and seed of this run."""
    meta = {
        "impl": impl.name,
        "sizes": sizes.name,
        "seed": seed,
        "iters": iters,
        "torch": torch.__version__,
        "python": platform.python_version(),
        "cutlass_dsl": _version("nvidia-cutlass-dsl"),
    }
    if impl.device.type == "cuda":
        major, minor = torch.cuda.get_device_capability(impl.device)
        meta.update(device=torch.cuda.get_device_name(impl.device), arch=f"sm_{major}{minor}", cuda=torch.version.cuda)
        meta["timing"] = (
            f"CUDA events around each call; before it a read of {FLUSH_FACTOR}× the L2 (cold L2) and a GPU sleep "
            "longer than the host's issue of the call (launch overhead not timed)"
        )
    else:
        meta.update(
            device=platform.processor() or platform.machine(),
            arch=platform.machine(),
            torch_threads=torch.get_num_threads(),
            timing="wall clock around each call, inputs rotated over 3× the last-level cache",
        )
    meta["cache_bytes"] = cache_bytes(impl.device)
    return meta


def _version(dist: str) -> str | None:
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return None


BENCH_KERNELS = ("wo", "attention", "mlp")


def bench_kernels(
    sizes: Sizes,
    iters: int = 20,
    warmup: int = 3,
    seed: int = 0,
    impl: Impl | None = None,
    kernels: tuple[str, ...] = BENCH_KERNELS,
) -> BenchReport:
    """Gate, then time, every variant of `kernels` (default all: "wo", "attention", "mlp") at `sizes`."""
    impl = impl or pick_impl()
    torch.manual_seed(seed)
    cache = cache_bytes(impl.device)
    report = BenchReport(run_meta(impl, sizes, seed, iters), copy_bandwidth_gbs(impl.device, cache))
    timer = _Timer(impl.device, iters, warmup, cache, report.copy_bandwidth_gbs)
    for name, rows in (("wo", _wo_rows), ("attention", _attention_rows), ("mlp", _mlp_rows)):
        if name in kernels:
            report.rows += rows(impl, sizes, seed, timer)
    return report


@dataclass(frozen=True)
class _Timer:
    device: torch.device
    iters: int
    warmup: int
    cache: int
    copy_gbs: float

    def time(self, row: BenchRow, make: Callable[[], tuple], run: Callable[..., object]) -> BenchRow:
        """Time run(*inputs) rotating over enough fresh `make()` input sets to keep the cache cold."""
        sets = [make() for _ in range(rotation_count(row.payload_bytes, self.cache))]
        return row.timed(
            time_calls(lambda i: run(*sets[i % len(sets)]), self.iters, self.warmup, self.device), self.copy_gbs
        )


def _failed(checks: list[KernelCheckResult]) -> str:
    bad = [c for c in checks if not c.passed]
    return "pass" if not bad else "; ".join(f"{c.check} failed: max |diff| {c.max_abs}, {c.detail}" for c in bad)


def _wo_rows(impl: Impl, sizes: Sizes, seed: int, timer: _Timer) -> list[BenchRow]:
    k, n, heads = sizes.wo
    dev = impl.device
    gen = torch.Generator().manual_seed(seed)
    w = torch.randn(k, n, generator=gen) / k**0.5
    weight = prepare_wo(w, dev)
    act_bytes = k * 2 + n * 4  # bf16 x in, fp32 y out
    # The torch path reads the decoded fp32 weight; the CuTe kernel reads NVFP4 bytes and block scales.
    weight_bytes = weight.nvfp4.payload_bytes() if impl.name == "cute" else k * n * 4
    shape = f"K={k} N={n} kv_heads={heads}"

    def x_and_weight() -> tuple:
        """A fresh x and a copy of the part of the weight this implementation reads."""
        t = weight.nvfp4
        if impl.name == "cute":
            copy = WoWeight(nvfp4.Nvfp4Tensor(t.packed.clone(), t.scales.clone(), t.global_scale), weight.dense)
        else:
            copy = WoWeight(t, weight.dense.clone())
        return torch.randn(1, k, generator=gen).to(torch.bfloat16).to(dev), copy

    rows = []
    for split in VALID_WO_SPLITS:
        row = BenchRow("wo_gemv_nvfp4", impl.name, f"{shape} wo_split={split}", "", weight_bytes + act_bytes)
        try:
            row.correctness = _failed(check_wo_gemv(impl.wo, split, heads, k, n, dev, seed))
        except Exception as exc:  # a shape this kernel refuses (e.g. slots not a multiple of 32 values)
            row.correctness = f"refused: {exc}"
        if row.correctness == "pass":
            timer.time(row, x_and_weight, lambda x, wt, s=split: impl.wo(x, wt, heads, s))
        rows.append(row)
    dense_bf16 = weight.dense.to(torch.bfloat16)  # [K, N]
    base = BenchRow("wo_gemv_nvfp4", "torch.matmul bf16", f"{shape} dequantized", "baseline", k * n * 2 + k * 2 + n * 2)
    timer.time(base, lambda: (torch.randn(1, k, generator=gen).to(torch.bfloat16).to(dev), dense_bf16.clone()),
               torch.matmul)  # fmt: skip
    split1 = rows[0].median_us
    for row in rows:
        if row.median_us:
            row.speedup_vs_baseline = base.median_us / row.median_us
            row.speedup_vs_split1 = split1 / row.median_us if split1 else None
    return [*rows, base]


def _paged_inputs(sizes: Sizes, dtype: torch.dtype, device: torch.device, gen: torch.Generator) -> tuple:
    """q, K/V pages (shuffled page order), block table and seq_lens for the attention shape."""
    batch, heads, kv_heads, head_dim, seq_len = sizes.attention
    pages_per_seq = -(-seq_len // PAGE_SIZE)
    order = torch.randperm(batch * pages_per_seq, generator=gen)
    table = order.view(batch, pages_per_seq).to(torch.int32)
    shape = (batch * pages_per_seq, PAGE_SIZE, kv_heads, head_dim)
    k, v = (torch.randn(shape, generator=gen).to(torch.bfloat16).to(dtype) for _ in range(2))
    q = torch.randn(batch, heads, head_dim, generator=gen).to(torch.bfloat16)
    lens = torch.full((batch,), seq_len, dtype=torch.int32)
    return tuple(t.to(device) for t in (q, k, v, table, lens))


def _attention_rows(impl: Impl, sizes: Sizes, seed: int, timer: _Timer) -> list[BenchRow]:
    batch, heads, kv_heads, head_dim, seq_len = sizes.attention
    dev, gen = impl.device, torch.Generator().manual_seed(seed + 2)
    elem = torch.finfo(impl.dtype).bits // 8
    payload = 2 * batch * seq_len * kv_heads * head_dim * elem + batch * heads * head_dim * (2 + 4)
    shape = f"B={batch} H={heads} kv_heads={kv_heads} D={head_dim} seq={seq_len} page={PAGE_SIZE}"
    scale = head_dim**-0.5
    q, k, v, table, lens = _paged_inputs(sizes, impl.dtype, dev, gen)
    want = attn_ref.paged_attention_reference(q, k, v, table, lens, scale)
    rows = []
    for splits in sizes.kv_splits:
        row = BenchRow("paged_decode_attention", impl.name, f"{shape} kv_splits={splits}", "", payload)
        try:
            first, second = (impl.attention(q, k, v, table, lens, scale, splits) for _ in range(2))
            diff = float((first.float() - want).abs().max())
            row.correctness = (
                "pass" if diff <= ATTENTION_TOLERANCE and torch.equal(first, second)
                else f"max |diff| {diff:.3g} vs the fp32 reference (allowed {ATTENTION_TOLERANCE:g}), "
                f"same bits on repeat: {torch.equal(first, second)}"
            )  # fmt: skip
        except Exception as exc:
            row.correctness = f"refused: {exc}"
        if row.correctness == "pass":
            timer.time(row, lambda: (q, k.clone(), v.clone(), table, lens),
                       lambda *a, s=splits: impl.attention(*a, scale, s))  # fmt: skip
        rows.append(row)
    # Baseline: torch SDPA on K/V already gathered into contiguous [B, kv_heads, seq, D] (no paging cost).
    kc, vc = (p[table.long()].reshape(batch, -1, kv_heads, head_dim)[:, :seq_len].transpose(1, 2) for p in (k, v))
    base = BenchRow("paged_decode_attention", f"torch sdpa {_dtype_name(impl.dtype)}", f"{shape} contiguous",
                    "baseline", payload)  # fmt: skip
    q4 = q.to(impl.dtype).unsqueeze(2)
    timer.time(base, lambda: (q4, kc.contiguous(), vc.contiguous()),
               lambda qq, kk, vv: F.scaled_dot_product_attention(qq, kk, vv, scale=scale, enable_gqa=True))  # fmt: skip
    for row in rows:
        if row.median_us:
            row.speedup_vs_baseline = base.median_us / row.median_us
    return [*rows, base]


def _mlp_rows(impl: Impl, sizes: Sizes, seed: int, timer: _Timer) -> list[BenchRow]:
    hidden, ffn, slots = sizes.mlp
    dev = impl.device
    elem = torch.finfo(impl.dtype).bits // 8
    payload = 3 * hidden * ffn * elem + hidden * 2 + hidden * 4
    shape = f"H={hidden} F={ffn}"
    x, wg, wu, wd = (t.to(dev) for t in mlp_ref.random_inputs(hidden, ffn, seed + 3))
    weights = tuple(t.to(impl.dtype) for t in (wg, wu, wd))
    row = BenchRow("fused_mlp_swiglu", impl.name, f"{shape} num_slots={slots}", "", payload)
    try:
        row.correctness = _failed(_mlp_checks(impl, hidden, ffn, slots, seed))
    except Exception as exc:
        row.correctness = f"refused: {exc}"

    def fresh() -> tuple:
        return (x.to(torch.bfloat16), *(w.clone() for w in weights))

    if row.correctness == "pass":
        if impl.name == "cute":
            timer.time(row, fresh, lambda xx, g, u, d: impl.mlp(xx, g, u, d, slots))
        else:
            timer.time(row, fresh, lambda xx, g, u, d: mlp_ref.fused_mlp_slots(xx.unsqueeze(0), g, u, d, slots))
    base = BenchRow(
        "fused_mlp_swiglu", f"torch matmul {_dtype_name(impl.dtype)}", f"{shape} unfused", "baseline", payload
    )
    xb = x.to(impl.dtype)
    timer.time(base, lambda: (xb, *(w.clone() for w in weights)),
               lambda xx, g, u, d: (F.silu(xx @ g.T) * (xx @ u.T)) @ d.T)  # fmt: skip
    if row.median_us:
        row.speedup_vs_baseline = base.median_us / row.median_us
    return [row, base]


def _mlp_checks(impl: Impl, hidden: int, ffn: int, slots: int, seed: int) -> list[KernelCheckResult]:
    """The CuTe kernel gets the full check (h, bit-exact fc2 order, tolerance); the torch path, whose sums
    inside a slot follow matmul order, the tolerance check against a float64 MLP."""
    if impl.name == "cute":
        return mlp_ref.check_fused_mlp(impl.mlp, hidden, ffn, slots, impl.device, seed)

    def torch_path(x, w_gate, w_up, w_down, num_slots):
        y = mlp_ref.fused_mlp_slots(x.unsqueeze(0), w_gate, w_up, w_down, num_slots)[0]
        return y, mlp_ref.swiglu_hidden(x.unsqueeze(0), w_gate, w_up)[0]

    return [
        c for c in mlp_ref.check_fused_mlp(torch_path, hidden, ffn, slots, impl.device, seed) if c.check == "tolerance"
    ]


def _dtype_name(dtype: torch.dtype) -> str:
    return str(dtype).removeprefix("torch.").replace("bfloat16", "bf16").replace("float32", "fp32")


MARKDOWN_COLUMNS = (
    "kernel", "impl", "variant", "µs (p10–p90)", "GB/s", "% copy BW", "× torch", "× wo_split=1", "launch µs", "gate",
)  # fmt: skip


def markdown_table(report: BenchReport) -> str:
    """The report as the Markdown table docs/benchmarks.md keeps: one row per kernel variant and baseline.

    µs is the median per call (p10–p90), GB/s the payload over the median, % copy BW that over the copy bandwidth
    measured in the same run, × torch the torch baseline's median over this row's, × wo_split=1 (W_O) the
    wo_split=1 median over this row's, launch µs the host's median time to issue one call (CUDA only).
    """

    def num(value: float | None, fmt: str) -> str:
        return "–" if value is None else format(value, fmt)

    lines = ["| " + " | ".join(MARKDOWN_COLUMNS) + " |", "|" + " --- |" * len(MARKDOWN_COLUMNS)]
    for r in report.rows:
        timed = "–" if r.median_us is None else f"{r.median_us:.1f} ({r.p10_us:.1f}–{r.p90_us:.1f})"
        launch = num(r.host_us, ".1f") + ("" if r.launch_hidden in (None, True) else " (not hidden)")
        cells = (
            r.kernel, r.impl, r.variant, timed, num(r.gbs, ".0f"), num(r.pct_copy_bw, ".0f"),
            num(r.speedup_vs_baseline, ".2f"), num(r.speedup_vs_split1, ".2f"), launch, r.correctness,
        )  # fmt: skip
        lines.append("| " + " | ".join(str(c).replace("|", "/") for c in cells) + " |")
    return "\n".join(lines)
