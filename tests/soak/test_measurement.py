"""The client/server latency cross-check end to end: a soak against the embedded engine records the server's
histograms per step, and an arm whose stream reaches the client in bursts is marked distorted and gets no
verdict."""

from __future__ import annotations

from pathlib import Path

import pytest

from runners.run.files import read_json, read_jsonl
from tests.support.plans import Plan, sharegpt_phase
from tests.support.processes import run_headless
from tests.support.project import ENGINE_CONFIG

pytestmark = pytest.mark.slow

# The engine, with `--test-fault stream_burst=$BURST_MS` only for an arm whose env sets BURST_MS.
COMMAND = [
    "/bin/sh", "-c",
    'exec "$0" -m engine.server --config "$1" --host "$2" --port "$3" --env-dir "$4" '
    '${BURST_MS:+--test-fault stream_burst=$BURST_MS}',
    "{python}", str(ENGINE_CONFIG), "{host}", "{port}", "{env_dir}",
]  # fmt: skip


def plan(directory: Path) -> Path:
    serve = {"command": COMMAND, "ready_timeout_s": 60, "stop_timeout_s": 5}
    arms = [
        {"name": "clean", "env": {"CUTE_WO_SPLIT": "1"}},
        {"name": "bursty", "env": {"CUTE_WO_SPLIT": "1", "BURST_MS": "300"}},
    ]
    phase = sharegpt_phase(requests=4, concurrency=2, max_tokens=12, ignore_eos=True, http_timeout_s=30)
    return Plan("measured", serve, arms, [phase]).write(directory)


@pytest.mark.serial  # client vs server latency agreement
def test_server_latency_agrees_on_a_clean_arm_and_a_bursty_arm_gets_no_verdict(tmp_path: Path) -> None:
    out = tmp_path / "run"
    result = run_headless(plan(tmp_path), out)
    assert result.returncode == 0, result.stderr + result.stdout
    clean = read_json(out / "arms" / "clean" / "primary" / "replay" / "0" / "phase.json")
    latency = clean["server_latency"]
    assert latency["reason"] is None and latency["note"] is None
    assert latency["client_requests"] == latency["server_requests"] == clean["stats"]["ok"] == 4
    metrics = latency["metrics"]
    assert metrics["time_to_first_token"]["count"] == 4 and metrics["e2e_request_latency"]["count"] == 4
    assert metrics["inter_token_latency"]["count"] == 4 * 11  # one per token after the first
    assert metrics["request_queue_time"]["count"] == 4 and metrics["request_decode_time"]["mean_ms"] > 0
    assert clean["measurement"]["status"] == "agree", clean["measurement"]
    assert [c["metric"] for c in clean["measurement"]["comparisons"]] == ["TTFT", "ITL"]

    bursty = read_json(out / "arms" / "bursty" / "primary" / "replay" / "0" / "phase.json")
    check = bursty["measurement"]
    assert check["status"] == "client-side distortion", check
    ttft = next(c for c in check["comparisons"] if c["metric"] == "TTFT")
    assert ttft["client_mean_ms"] >= 250 and ttft["server_mean_ms"] < ttft["client_mean_ms"] - ttft["bound_ms"]
    assert bursty["server_latency"]["server_requests"] == 4  # the server's own numbers stay true

    events = [e for e in read_jsonl(out / "events.jsonl") if e["type"] == "measurement_distorted"]
    assert [e["step"]["arm"] for e in events] == ["bursty"] and "TTFT mean: client" in events[0]["reason"]
    summary = read_json(out / "summary.json")
    assert summary["verdicts"] == {"clean": "baseline", "bursty": "no verdict"}
    gate = next(g for g in summary["gates"] if g["name"] == "measurement" and g["arm"] == "bursty")
    assert gate["status"] == "fail" and gate["verdict"] == "no verdict"
    reason = gate["failed_criteria"][0]
    assert reason.startswith("bursty/primary/replay/0: client-side distortion: TTFT mean: client ")
    assert f"{ttft['client_mean_ms']:.1f} ms vs server {ttft['server_mean_ms']:.1f} ms" in reason
    md = (out / "summary.md").read_text()
    assert "## Client vs server latency" in md and "| clean/primary/replay/0 | 4 / 4 |" in md
    assert "**client-side distortion**" in md and "CLIENT-SIDE DISTORTION" in result.stdout
