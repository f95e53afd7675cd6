"""A real vLLM wedged mid-step: its EngineCore (and workers) suspended with SIGSTOP while the API server still
answers /health and /metrics, the state users report (requests running, generation tokens frozen). The stall
watch must kill it within stall_s + 2 s of the suspension, with the frozen counter as evidence.

Run with `-s` to see the figures docs/benchmarks.md quotes.
"""

from __future__ import annotations

import contextlib
import subprocess
import sys
import time
from pathlib import Path

import httpx
import psutil
import pytest

from runners.replay.server_metrics import parse_metrics
from runners.run.files import read_json, read_jsonl
from runners.testbed.vllm_target import process_serve_toml, unavailable
from tests.support.events import first_event, read_events
from tests.support.processes import pid_gone
from tests.support.project import ROOT
from tests.support.waits import wait_until

pytestmark = [pytest.mark.slow, pytest.mark.serial]  # serial: a stall caught in time, and CPU-heavy
STALL_S = 3.0
READY_DEADLINE_S = 360.0
RUN_END_DEADLINE_S = 120.0


def _plan(directory: Path) -> Path:
    """One arm whose runner starts vLLM: a long step to wedge, then a step that must not run on the dead target."""
    path = directory / "plan.toml"
    path.write_text(
        f"""
name = "vllm-stall"
{process_serve_toml()}
[[arms]]
name = "vllm"

[[phases]]
name = "wedged"
kind = "sharegpt"
requests = 64
concurrency = 2
max_tokens = 64
ignore_eos = true
http_timeout_s = 60
stall_s = {STALL_S}
metrics_interval_s = 0.25
deadline_s = 240

[[phases]]
name = "after"
kind = "sharegpt"
requests = 2
concurrency = 1
max_tokens = 8
http_timeout_s = 60
"""
    )
    return path


def _decoding(base_url: str) -> bool:
    """vLLM's /metrics says requests are running and it has generated tokens."""
    with contextlib.suppress(httpx.HTTPError):
        values = parse_metrics(httpx.get(f"{base_url}/metrics", timeout=2.0).text)
        return bool(values.num_requests_running) and bool(values.generation_tokens)
    return False


def _ok_requests(step: Path) -> int:
    path = step / "requests.jsonl"
    return sum(r["status"] == "ok" for r in read_jsonl(path)) if path.exists() else 0


def test_a_vllm_whose_engine_core_is_sigstopped_mid_step_is_caught_and_killed(tmp_path: Path) -> None:
    reason = unavailable()
    if reason:
        pytest.skip(reason)
    run = tmp_path / "run"
    runner = subprocess.Popen(
        [sys.executable, "-m", "console.cli", "run", str(_plan(tmp_path)), "--headless", "--out", str(run)],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=ROOT,
    )  # fmt: skip
    stopped: list[psutil.Process] = []
    try:
        assert wait_until(lambda: first_event(run, "step_started") or runner.poll() is not None, READY_DEADLINE_S, 0.5)
        ready = first_event(run, "serve_ready")
        assert ready is not None and runner.poll() is None, read_events(run)
        step = run / "arms" / "vllm" / "primary" / "wedged" / "0"
        assert wait_until(lambda: _ok_requests(step) >= 2, 60, 0.1), "vLLM answered no request in 60 s"
        assert wait_until(lambda: _decoding(ready["base_url"]), 30, 0.05), (
            "vLLM's /metrics never showed a request running"
        )
        for child in psutil.Process(ready["pid"]).children(recursive=True):  # EngineCore and its workers
            with contextlib.suppress(psutil.NoSuchProcess):
                child.suspend()
                stopped.append(child)
        suspended_at = time.time()
        assert stopped, "vLLM has no EngineCore child to suspend"
        output, _ = runner.communicate(timeout=RUN_END_DEADLINE_S)
        assert runner.returncode == 1, output[-3000:]
    finally:
        for proc in stopped:  # the runner's kill should have ended them; never leave one suspended
            with contextlib.suppress(psutil.NoSuchProcess):
                proc.resume()
                proc.kill()
        if runner.poll() is None:
            runner.kill()
            runner.wait(10)

    events = read_events(run)
    stalled = [e for e in events if e["type"] == "engine_stalled"]
    assert len(stalled) == 1, [e["type"] for e in events]
    event = stalled[0]
    detection_s = event["t"] - suspended_at
    print(f"\nvLLM EngineCore SIGSTOP to kill {detection_s:.2f} s (stall_s {STALL_S:g}; the runner's own figure "
          f"{event['quiet_s']:.2f} s quiet + {event['kill_s']:.3f} s kill); {event['metrics']}",
          file=sys.stderr)  # fmt: skip
    assert STALL_S <= detection_s <= STALL_S + 2.0, (detection_s, event)
    # the wedged state users report: /metrics still answers, requests running, generation tokens frozen
    assert event["tokens"] is not None and event["running"] is not None and event["running"] > 0, event
    assert event["in_flight"] == 2 and event["how"] == "ended: killed (signal 9)", event

    failed = {e["step"]["phase"]: e["reason"] for e in events if e["type"] == "step_failed"}
    assert failed["wedged"] == event["reason"]
    assert failed["wedged"].startswith(f"engine stalled for {event['quiet_s']:.1f} s (requests in flight 2, tokens "
                                       f"frozen at {event['tokens']:g})")  # fmt: skip
    assert failed["after"] == "not run: the serve target died in an earlier step"
    record = read_json(step / "phase.json")
    assert record["stall"]["tokens"] == event["tokens"] and record["server_metrics"]["scrapes_ok"] >= 2
    assert 2 <= _ok_requests(step) < 64  # what finished before the stall is kept
    served = [e["target"]["pid"] for e in events if e["type"] == "serve_stopped"]
    assert served == [ready["pid"]] and pid_gone(ready["pid"])
    assert all(wait_until(lambda p=p: not p.is_running() or p.status() == psutil.STATUS_ZOMBIE, 10) for p in stopped)
