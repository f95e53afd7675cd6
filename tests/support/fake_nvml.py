"""A pynvml stand-in for the watchdog's NvmlSampler: one device, scripted failures, a hung call."""

from __future__ import annotations

import threading
from types import SimpleNamespace

from engine.units import GIB


class NVMLError(Exception):
    """Stands in for pynvml.NVMLError."""


class NVMLError_NotSupported(NVMLError):
    """Stands in for pynvml.NVMLError_NotSupported."""


class FakeNvml:
    """A pynvml stand-in: one device; `fail` maps a function name to the exception it raises; `block`
    makes nvmlDeviceGetName wait on an event (a hung driver call)."""

    NVMLError = NVMLError
    NVMLError_NotSupported = NVMLError_NotSupported
    NVML_TEMPERATURE_GPU = 0
    NVML_CLOCK_SM = 1
    NVML_CLOCK_MEM = 2

    def __init__(self, total: int | None = 128 * GIB, processes: list | None = None) -> None:
        self.total = total
        self.processes = processes if processes is not None else []
        self.fail: dict[str, Exception] = {}
        self.block: threading.Event | None = None
        self.calls: dict[str, int] = {}

    def _call(self, name: str) -> None:
        self.calls[name] = self.calls.get(name, 0) + 1
        if name in self.fail:
            raise self.fail[name]

    def nvmlInit(self) -> None:
        self._call("nvmlInit")

    def nvmlDeviceGetCount(self) -> int:
        self._call("nvmlDeviceGetCount")
        return 1

    def nvmlDeviceGetHandleByIndex(self, i: int) -> str:
        self._call("nvmlDeviceGetHandleByIndex")
        return f"gpu{i}"

    def nvmlDeviceGetName(self, h: str) -> bytes:
        self._call("nvmlDeviceGetName")
        if self.block is not None:
            self.block.wait(5.0)
        return b"NVIDIA GB10"

    def nvmlDeviceGetUtilizationRates(self, h: str) -> SimpleNamespace:
        self._call("nvmlDeviceGetUtilizationRates")
        return SimpleNamespace(gpu=87, memory=10)

    def nvmlDeviceGetTemperature(self, h: str, sensor: int) -> int:
        self._call("nvmlDeviceGetTemperature")
        assert sensor == self.NVML_TEMPERATURE_GPU
        return 61

    def nvmlDeviceGetPowerUsage(self, h: str) -> int:
        self._call("nvmlDeviceGetPowerUsage")
        return 45250

    def nvmlDeviceGetClockInfo(self, h: str, clock: int) -> int:
        self._call("nvmlDeviceGetClockInfo")
        return {self.NVML_CLOCK_SM: 2418, self.NVML_CLOCK_MEM: 8533}[clock]

    def nvmlDeviceGetComputeRunningProcesses(self, h: str) -> list:
        self._call("nvmlDeviceGetComputeRunningProcesses")
        return self.processes

    def nvmlDeviceGetGraphicsRunningProcesses(self, h: str) -> list:
        self._call("nvmlDeviceGetGraphicsRunningProcesses")
        return []

    def nvmlDeviceGetMemoryInfo(self, h: str) -> SimpleNamespace:
        self._call("nvmlDeviceGetMemoryInfo")
        return SimpleNamespace(total=self.total, free=0, used=0)
