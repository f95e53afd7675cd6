"""How much memory a vLLM serve target asks for: `--gpu-memory-utilization`, as vLLM 0.32 reads it.

vLLM reserves that fraction of the device's memory at start (weights, activations, KV cache). On a
unified-memory host (a GB10) the device's memory is the host's, so the fraction is of MemTotal, and
vLLM's own start-up check compares it with the free memory it is told about. The option is read from
the serve command (`--gpu-memory-utilization X`, `=X`, or the underscore spelling; the last one wins);
a vLLM command without it gets vLLM's default, 0.9.
"""

from __future__ import annotations

from dataclasses import dataclass

from runners.plan.serve_spec import DockerServe, ExternalServe, ProcessServe
from runners.plan.vllm_profiler import is_vllm_command, serve_argv

VLLM_DEFAULT_UTILIZATION = 0.9
OPTIONS = ("--gpu-memory-utilization", "--gpu_memory_utilization")


@dataclass(frozen=True)
class MemoryAsk:
    """The fraction of device memory vLLM will take, and where it comes from (a plan field, or the default)."""

    fraction: float
    where: str


def vllm_memory_ask(serve: ProcessServe | DockerServe | ExternalServe) -> MemoryAsk | None:
    """What the target's vLLM command asks for; None for a target that is not recognisably vLLM, or a value
    that is not a number in (0, 1] (vLLM refuses it itself, with its own message)."""
    found = serve_argv(serve)
    if found is None:
        return None
    argv, where = found
    ask = None
    for i, word in enumerate(argv):
        name, sep, value = word.partition("=")
        if name not in OPTIONS:
            continue
        if not sep:
            if i + 1 >= len(argv):
                continue
            value = argv[i + 1]
        try:
            fraction = float(value)
        except ValueError:
            return None
        if not 0 < fraction <= 1:
            return None
        ask = MemoryAsk(fraction, where[i])
    if ask is not None:
        return ask
    if is_vllm_command(argv):
        return MemoryAsk(VLLM_DEFAULT_UTILIZATION, f"vLLM's default --gpu-memory-utilization ({where[0]} runs vLLM)")
    return None
