"""The correctness checks a serve target reports running on its own kernels (`/debug/config` `kernel_checks`)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class KernelCheck:
    """One correctness check the serve target ran on its kernels (reported in /debug/config `kernel_checks`)."""

    kernel: str
    check: str  # "bit-exact" | "tolerance"
    passed: bool
    max_abs: float | None = None
    tolerance: float | None = None
    detail: str = ""
