"""ExternalRuntime: a server we do not own is probed and measured, never stopped."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from runners.run.files import read_json, read_jsonl
from runners.serve.external import NOT_OWNED, ExternalRuntime
from runners.serve.runtime import ServeError
from tests.conftest import ROOT, free_port

pytestmark = pytest.mark.slow


def _plan(tmp_path: Path, url: str) -> Path:
    text = f"""
name = "ext"

[serve]
kind = "external"
url = "{url}"
ready_timeout_s = 30

[[arms]]
name = "split8"
env = {{ CUTE_WO_SPLIT = "8" }}

[[arms]]
name = "split1"
env = {{ CUTE_WO_SPLIT = "1" }}

[[phases]]
name = "replay"
kind = "sharegpt"
requests = 4
concurrency = 2
max_tokens = 8
http_timeout_s = 30
"""
    path = tmp_path / "plan.toml"
    path.write_text(text)
    return path


def test_a_soak_against_an_external_server_verifies_env_and_leaves_it_running(engine_url: str, tmp_path: Path) -> None:
    """The arm the server runs is measured; the arm it does not run is refused; the server keeps running."""
    out = tmp_path / "run"
    result = subprocess.run(
        [sys.executable, "-m", "console.cli", "run", str(_plan(tmp_path, engine_url)), "--headless", "--out", str(out)],
        capture_output=True, text=True, timeout=180, cwd=ROOT,
    )  # fmt: skip
    assert result.returncode == 1, result.stdout + result.stderr
    events = read_jsonl(out / "events.jsonl")
    assert [e["step"]["arm"] for e in events if e["type"] == "step_finished"] == ["split8"]
    assert read_json(out / "arms" / "split8" / "effective.json")["verified"] is True
    mismatch = [e for e in events if e["type"] == "env_mismatch"]
    assert mismatch[0]["arm"] == "split1" and "want '1', target runs '8'" in mismatch[0]["mismatches"][0]
    stopped = [e["how"] for e in events if e["type"] == "serve_stopped"]
    assert stopped == [NOT_OWNED, NOT_OWNED]
    assert httpx.get(f"{engine_url}/health", timeout=5).status_code == 200
    assert read_json(out / "provenance.json")["targets"]["split8/primary"] == {"kind": "external", "url": engine_url}


async def test_an_unreachable_external_server_is_reported_not_waited_on_forever() -> None:
    """wait_ready fails by its deadline naming the URL; wait_exit returns once /health keeps failing."""
    url = f"http://127.0.0.1:{free_port()}"
    rt = ExternalRuntime(url, poll_s=0.05, unreachable_after_s=0.3)
    t0 = time.monotonic()
    with pytest.raises(ServeError, match=f"serve target at {url} not ready after 1 s"):
        await rt.wait_ready(1.0)
    ended = await rt.wait_exit()
    assert ended.how == "unreachable" and "/health failed for 0.3 s" in ended.detail
    assert time.monotonic() - t0 < 5
    assert (await rt.stop(5)).how == NOT_OWNED and (await rt.kill()).how == NOT_OWNED
    assert (await rt.inspect())["healthy"] is False
