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
from tests.support.processes import free_port
from tests.support.project import ROOT

pytestmark = pytest.mark.slow


def _plan(tmp_path: Path, url: str, envs: dict[str, str]) -> Path:
    """Arms (name -> env as TOML inline-table text) against the external server at `url`."""
    arms = "".join(f'\n[[arms]]\nname = "{name}"\nenv = {{ {env} }}\n' for name, env in envs.items())
    text = f"""
name = "ext"

[serve]
kind = "external"
url = "{url}"
ready_timeout_s = 30
{arms}
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


def _cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "console.cli", *args], capture_output=True, text=True, timeout=180,
                          cwd=ROOT)  # fmt: skip


def test_a_soak_against_an_external_server_verifies_env_and_leaves_it_running(engine_url: str, tmp_path: Path) -> None:
    """Two arms with the env the server runs: both verified by its /debug/config (the env gate passes), measured;
    the server keeps running."""
    out = tmp_path / "run"
    plan = _plan(tmp_path, engine_url, {"split8": 'CUTE_WO_SPLIT = "8"', "again": 'CUTE_WO_SPLIT = "8"'})
    result = _cli("run", str(plan), "--headless", "--out", str(out))
    assert result.returncode == 0, result.stdout + result.stderr
    events = read_jsonl(out / "events.jsonl")
    assert [e["step"]["arm"] for e in events if e["type"] == "step_finished"] == ["split8", "again"]
    assert read_json(out / "arms" / "split8" / "effective.json")["verified"] is True
    assert [e["topic"] for e in events if e["type"] == "preflight_warning"] == ["env"]
    stopped = [e["how"] for e in events if e["type"] == "serve_stopped"]
    assert stopped == [NOT_OWNED, NOT_OWNED]
    assert httpx.get(f"{engine_url}/health", timeout=5).status_code == 200
    assert read_json(out / "provenance.json")["targets"]["split8/primary"] == {"kind": "external", "url": engine_url}
    gates = {(g["arm"], g["name"]): g["status"] for g in read_json(out / "summary.json")["gates"]}
    assert gates[("split8", "env")] == gates[("again", "env")] == "pass"  # the env gate lets a verdict through


def test_arms_that_differ_by_env_on_an_external_server_are_refused_before_anything_runs(
    engine_url: str, tmp_path: Path
) -> None:
    """The runner cannot set env on a server it does not own: `validate` and `run` refuse, naming the field."""
    plan = _plan(tmp_path, engine_url, {"split8": 'CUTE_WO_SPLIT = "8"', "split1": 'CUTE_WO_SPLIT = "1"'})
    for args in (("validate", str(plan)), ("run", str(plan), "--headless", "--out", str(tmp_path / "run"))):
        result = _cli(*args)
        assert result.returncode == 2, result.stdout + result.stderr
        assert "arms[*].env: serve.kind is external" in result.stderr and engine_url in result.stderr
        assert "Traceback" not in result.stderr
    assert not (tmp_path / "run").exists()


def test_env_the_external_server_does_not_report_leaves_the_arms_without_a_verdict(
    engine_url: str, tmp_path: Path
) -> None:
    """A key the server's /debug/config does not report cannot be verified: measured, but no verdict."""
    out = tmp_path / "run"
    env = 'CUTE_WO_SPLIT = "8", GB10_PROBE = "x"'
    result = _cli("run", str(_plan(tmp_path, engine_url, {"a": env, "b": env})), "--headless", "--out", str(out))
    assert result.returncode == 0, result.stdout + result.stderr
    summary = read_json(out / "summary.json")
    assert summary["verdicts"] == {} or set(summary["verdicts"].values()) <= {None, "no verdict"}
    assert [a["env_status"] for a in summary["arms"]] == ["unverified", "unverified"]
    summary_md = (out / "summary.md").read_text()
    assert "**no verdict**" in summary_md and "GB10_PROBE" in summary_md


@pytest.mark.serial  # a 5 s bound
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
