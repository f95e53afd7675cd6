"""Building CuTe DSL kernels without a GPU: importing the DSL, fake tensors, kept PTX/cubin and what they say.

Every kernel module in this package compiles through `compile_kept`, which keeps PTX and cubin in a dump
directory (one per variant: the DSL names files after the function, so variants would overwrite each other)
and reports the cubin size, registers per thread (read from the cubin's .nv.info) and whether the PTX has
128-bit global loads (into registers, or 16-byte cp.async into shared memory).
"""

from __future__ import annotations

import re
import struct
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

_EIATTR_REGCOUNT = 0x2F
_EIFMT_SVAL = 0x04
_LOAD_128 = re.compile(
    r"ld\.global(?:\.[a-z0-9:_]+)*\.(?:v4\.(?:b32|u32|s32|f32)|v2\.(?:b64|u64|s64|f64))\s"
    r"|cp\.async\.c[ag]\.shared\.global(?:\.[a-z0-9:_]+)*\s+\[[^\]]+\],\s*\[[^\]]+\],\s*16\b"  # 16 B to smem
)
INSTALL_HINT = "install it with `pip install nvidia-cutlass-dsl==4.8.1`"


class CuteUnavailableError(RuntimeError):
    """The CuTe DSL (pip package nvidia-cutlass-dsl) is not installed, or no GPU is there to run on."""


@dataclass(frozen=True)
class CompileReport:
    """What one compile of one kernel variant for one arch produced."""

    kernel: str
    variant: str
    arch: str
    ptx_path: Path
    cubin_path: Path
    cubin_bytes: int
    registers: int | None  # per thread, from the cubin's .nv.info; None when it cannot be read
    vectorized_128: bool  # the PTX has 128-bit global loads (ld.global.v4 or 16-byte cp.async)
    compile_seconds: float


@dataclass(frozen=True)
class SlotLauncher:
    """A kernel compiled for the current GPU plus its split workspace: per-slot partials and arrival counters."""

    compiled: Any
    partial: torch.Tensor
    counter: torch.Tensor  # int32, all 0 between launches (the last CTA resets what it counted)


def cute_modules() -> tuple[Any, Any]:
    """Import the CuTe DSL as (cutlass, cutlass.cute), or raise CuteUnavailableError saying how to install it."""
    try:
        import cutlass
        import cutlass.cute as cute
    except ImportError as exc:
        raise CuteUnavailableError(f"the CuTe DSL is not importable ({exc}); {INSTALL_HINT}") from exc
    return cutlass, cute


def fake_tensor(dtype: Any, dims: tuple[int, ...]) -> Any:
    """A row-major fake tensor, 16-byte aligned so 128-bit copies are provably legal."""
    from cutlass.cute.runtime import make_fake_compact_tensor

    return make_fake_compact_tensor(dtype, dims, stride_order=tuple(reversed(range(len(dims)))), assumed_align=16)


def fake_stream() -> Any:
    """A fake CUDA stream argument for compiling a `@cute.jit` host function that takes one."""
    from cutlass.cute.runtime import make_fake_stream

    return make_fake_stream()


def require_cuda(kernel: str, *tensors: torch.Tensor) -> None:
    """Raise CuteUnavailableError unless a CUDA GPU is present and every tensor lives on it."""
    if not torch.cuda.is_available() or not all(t.is_cuda for t in tensors):
        raise CuteUnavailableError(f"{kernel} needs a CUDA GPU and CUDA tensors; none is available here")


def current_stream(device: torch.device) -> Any:
    """torch's current CUDA stream on `device` as the CUstream a compiled CuTe function takes."""
    from cuda.bindings.driver import CUstream

    return CUstream(torch.cuda.current_stream(device).cuda_stream)


def cubin_registers(cubin: bytes) -> int | None:
    """Registers per thread from EIATTR_REGCOUNT in the cubin's .nv.info sections (the largest over kernels)."""
    if cubin[:4] != b"\x7fELF":
        return None
    (shoff,) = struct.unpack_from("<Q", cubin, 0x28)
    shentsize, shnum, shstrndx = struct.unpack_from("<HHH", cubin, 0x3A)
    sections = [struct.unpack_from("<IIQQQQ", cubin, shoff + i * shentsize) for i in range(shnum)]
    names_at = sections[shstrndx][4]
    counts = []
    for name, _, _, _, offset, size in sections:
        if not cubin[names_at + name :].startswith(b".nv.info"):
            continue
        pos = offset
        while pos + 4 <= offset + size:
            fmt, attr = cubin[pos], cubin[pos + 1]
            if fmt != _EIFMT_SVAL:
                pos += 4
                continue
            (length,) = struct.unpack_from("<H", cubin, pos + 2)
            if attr == _EIATTR_REGCOUNT:
                counts.append(struct.unpack_from("<II", cubin, pos + 4)[1])
            pos += 4 + length
    return max(counts) if counts else None


def compile_kept(host: Any, args: tuple, *, kernel: str, variant: str, arch: str, dump_dir: Path) -> CompileReport:
    """`cute.compile(host, *args)` for `arch` (e.g. "sm_121a"), keeping PTX and cubin in `dump_dir`; no GPU needed."""
    _, cute = cute_modules()
    dump_dir = Path(dump_dir).resolve()
    dump_dir.mkdir(parents=True, exist_ok=True)  # without it the DSL silently writes nothing
    started = time.perf_counter()
    compiled = cute.compile(host, *args, options=f"--gpu-arch {arch} --keep-ptx --keep-cubin --dump-dir {dump_dir}")
    seconds = time.perf_counter() - started
    ptx, cubin = compiled.artifacts.PTX, compiled.artifacts.CUBIN
    ptx_paths, cubin_paths = sorted(dump_dir.glob(f"*.{arch}.ptx")), sorted(dump_dir.glob(f"*.{arch}.cubin"))
    if not isinstance(cubin, bytes) or not ptx_paths or not cubin_paths:
        raise RuntimeError(f"compiling for {arch} kept no PTX/cubin in {dump_dir}; files: {sorted(dump_dir.iterdir())}")
    return CompileReport(
        kernel=kernel,
        variant=variant,
        arch=arch,
        ptx_path=ptx_paths[-1],
        cubin_path=cubin_paths[-1],
        cubin_bytes=len(cubin),
        registers=cubin_registers(cubin),
        vectorized_128=bool(_LOAD_128.search(ptx)),
        compile_seconds=seconds,
    )
