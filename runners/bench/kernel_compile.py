"""`bench kernels --compile-only`: compile every CuTe DSL kernel for an arch without a GPU and report each build."""

from __future__ import annotations

import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path

from engine.kernels.cute.wo_gemv import compile_wo_gemv
from engine.kernels.wo_split import VALID_WO_SPLITS

# The W_O shape of the issue: Qwen3.5-27B's attention output projection (K = heads · head_dim, N = hidden).
WO_SHAPE = {"k": 6144, "n": 5120, "num_kv_heads": 4}


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
    out = []
    for split in VALID_WO_SPLITS:
        report = compile_wo_gemv(**WO_SHAPE, wo_split=split, arch=arch, dump_dir=root / arch / f"wo_gemv_split{split}")
        out.append(
            CompiledKernel(
                kernel=report.kernel,
                variant=report.variant,
                arch=arch,
                registers=report.registers,
                cubin_bytes=report.cubin_bytes,
                vectorized_128=report.vectorized_128,
                compile_s=round(report.compile_seconds, 3),
                ptx=str(report.ptx_path),
                cubin=str(report.cubin_path),
            )
        )
    return out
