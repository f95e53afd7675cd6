"""A plan file whose vLLM target is profiled with stack tracing on (vLLM's default) and the 60 s stop deadline."""

from __future__ import annotations

from pathlib import Path

from tests.conftest import write_plan

STACKS_ON = '{"profiler": "torch", "torch_profiler_dir": "{profile_dir}", "max_iterations": 200}'
VLLM_STACKS_ON = ["{python}", "-m", "vllm.entrypoints.openai.api_server", "--model", "m", "--port", "{port}",
                  "--profiler-config", STACKS_ON]  # fmt: skip


def profiled_vllm_plan(directory: Path) -> Path:
    """write_plan's two arms against a vLLM command, plus a supplementary phase `profiled` with profile = true."""
    path = write_plan(directory, command=VLLM_STACKS_ON)
    path.write_text(path.read_text() + '\n[[phases]]\nname = "profiled"\nkind = "sharegpt"\nmode = "supplementary"\n'
                    "requests = 1\nprofile = true\n")  # fmt: skip
    return path
