"""`bench kernels --compile-only`: compile every CuTe DSL kernel for an arch without a GPU and report each build."""

from __future__ import annotations

import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path

from engine.kernels.cute.build import CompileReport
from engine.kernels.cute.fused_mlp import compile_fused_mlp
from engine.kernels.cute.paged_attention import compile_paged_attention
from engine.kernels.cute.wo_gemv import compile_wo_gemv
from engine.kernels.wo_split_values import VALID_WO_SPLITS

# The shapes: Qwen3.5-27B-like W_O (K = heads · head_dim, N = hidden) and MLP; and the tiny engine model.
WO_SHAPE = {"k": 6144, "n": 5120, "num_kv_heads": 4}
MLP_SHAPES = ({"hidden": 5120, "ffn": 17408, "num_slots": 136}, {"hidden": 256, "ffn": 768, "num_slots": 6})
ATTENTION_SHAPES = (
    {"heads": 24, "kv_heads": 4, "head_dim": 256, "page_size": 16, "num_splits": 8},
    {"heads": 8, "kv_heads": 2, "head_dim": 32, "page_size": 16, "num_splits": 4},
)


@dataclass(frozen=True)
class CompiledKernel:
    """One kernel variant built for one arch."""

    kernel: str
    variant: str
    arch: str
    registers: int | None
    cubin_bytes: int
    vectorized_128: bool
    compile_s: float
    ptx: str
    cubin: str

    def as_dict(self) -> dict:
        """JSON form."""
        return asdict(self)


def compile_all(arch: str, dump_root: Path | None = None) -> list[CompiledKernel]:
    """Compile every CuTe kernel variant for `arch`, keeping PTX and cubin under `dump_root` (a temp dir if None)."""
    root = Path(dump_root) if dump_root else Path(tempfile.mkdtemp(prefix="gb10-cute-"))
    reports = [
        compile_wo_gemv(**WO_SHAPE, wo_split=split, arch=arch, dump_dir=root / arch / f"wo_gemv_split{split}")
        for split in VALID_WO_SPLITS
    ]
    for shape in MLP_SHAPES:
        dump = root / arch / f"fused_mlp_h{shape['hidden']}_f{shape['ffn']}"
        reports.append(compile_fused_mlp(**shape, arch=arch, dump_dir=dump))
    for shape in ATTENTION_SHAPES:
        dump = root / arch / f"paged_attention_h{shape['heads']}_d{shape['head_dim']}_s{shape['num_splits']}"
        reports.append(compile_paged_attention(**shape, arch=arch, dump_dir=dump))
    return [_row(r) for r in reports]


def _row(report: CompileReport) -> CompiledKernel:
    return CompiledKernel(
        kernel=report.kernel,
        variant=report.variant,
        arch=report.arch,
        registers=report.registers,
        cubin_bytes=report.cubin_bytes,
        vectorized_128=report.vectorized_128,
        compile_s=round(report.compile_seconds, 3),
        ptx=str(report.ptx_path),
        cubin=str(report.cubin_path),
    )
