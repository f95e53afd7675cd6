"""`gb10-console bench client` (runners/bench/client_bench.py) as real processes: against the mock server (prompts
of approximate length), against the engine (prompts of exact length), and against a dead URL."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.processes import HOST, free_port, stop_process, wait_healthy
from tests.support.project import ROOT

CLI = [sys.executable, "-m", "console.cli"]


def bench_client(url: str, *extra: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [*CLI, "bench", "client", "--url", url, *extra], capture_output=True, text=True, timeout=120, cwd=ROOT
    )


@pytest.mark.slow
def test_bench_cli_client_against_the_mock_server_then_a_dead_url(tmp_path: Path) -> None:
    port = free_port()
    url = f"http://{HOST}:{port}"
    args = ["bench", "mock-server", "--port", str(port), "--ttft-ms", "20", "--itl-ms", "2", "--tokens", "16",
            "--tokens-per-chunk", "2"]  # fmt: skip
    with open(tmp_path / "mock.log", "wb") as log:
        server = subprocess.Popen([*CLI, *args], stdout=log, stderr=subprocess.STDOUT, cwd=ROOT)
    try:
        wait_healthy(url, server, deadline_s=30.0)
        out = tmp_path / "bench.json"
        done = bench_client(url, "--concurrency", "4", "--requests", "20", "--input-len", "50", "--json", str(out))
        assert done.returncode == 0, done.stdout + done.stderr
        result = json.loads(out.read_text())
        assert result["ok"] == 20 and result["failed"] == 0 and result["requests"] == 20
        assert result["req_s"] > 0 and result["cpu_s"] > 0
        assert result["ttft_ms"]["count"] == 20 and result["ttft_ms"]["mean"] >= 20
        assert result["e2el_ms"]["count"] == 20 and result["e2el_ms"]["mean"] >= result["ttft_ms"]["mean"]
        # the mock server cannot count tokens: the prompts' length is approximate, and both outputs say so
        sized = result["input_len"]
        assert sized["method"] == "approximate" and sized["tokens_min"] is None
        assert sized["note"].startswith("approximate: 200 characters each") and "has no /tokenize" in sized["note"]
        assert "approximate: 200 characters" in done.stdout and "E2EL ms" in done.stdout
        # the mock counts every chunk's 2 tokens when asked: 16 - 2 per-token ITL samples per request
        assert result["itl_basis"] == "per_token" and result["itl_ms"]["count"] == 20 * 14
        assert "ITL ms (per_token)" in done.stdout
    finally:
        stop_process(server)
    dead = bench_client(url, "--concurrency", "1", "--requests", "1")
    assert dead.returncode != 0
    both = dead.stdout + dead.stderr
    assert "Traceback" not in both
    assert "error:" in both and f"{url}/v1/models" in both


@pytest.mark.slow
def test_bench_cli_input_len_is_exact_where_the_server_tokenizes(tmp_path: Path, engine_url: str) -> None:
    out = tmp_path / "bench.json"
    args = ("--concurrency", "2", "--requests", "4", "--max-tokens", "4", "--input-len", "100", "--json", str(out))
    done = bench_client(engine_url, *args)
    assert done.returncode == 0, done.stdout + done.stderr
    result = json.loads(out.read_text())
    assert result["input_len"] == {
        "requested": 100, "method": "tokenize", "tokens_min": 100, "tokens_max": 100,
        "note": "100 tokens as the server's /tokenize counts them (chat template included)",
    }  # fmt: skip
    assert result["ok"] == 4 and result["e2el_ms"]["count"] == 4


def test_bench_cli_dead_url_error_is_one_line_on_stderr() -> None:
    url = f"http://{HOST}:{free_port()}"  # nobody listens there
    dead = bench_client(url, "--concurrency", "1", "--requests", "1")
    lines = [line for line in (dead.stdout + dead.stderr).splitlines() if line.strip()]
    assert dead.returncode != 0
    assert len(lines) == 1 and url in lines[0], lines
    assert dead.stderr.strip() == lines[0]
