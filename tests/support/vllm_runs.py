"""Reading a soak's run directory against a real vLLM (tests/vllm): its steps' records, its events, and the check
that a step's client numbers agree with vLLM's own histograms."""

from __future__ import annotations

import subprocess
from pathlib import Path

from runners.run.files import read_json, read_jsonl

# A supplementary step under vLLM's torch profiler, 4 requests of 32 tokens: what both the process and the container
# soaks profile (its stop takes ~3 s on this machine's tiny Llama).
PROFILED_STEP = {
    "name": "profiled", "kind": "sharegpt", "mode": "supplementary", "profile": True, "profile_stop_timeout_s": 120,
    "requests": 4, "concurrency": 2, "max_tokens": 32, "ignore_eos": True, "http_timeout_s": 60, "deadline_s": 240,
}  # fmt: skip


def phase_records(run: Path, arm: str | None = None) -> dict[str, dict]:
    """phase.json of every step (of `arm`, or of every arm), by phase name."""
    return {p.parent.parent.name: read_json(p) for p in sorted(run.glob(f"arms/{arm or '*'}/*/*/*/phase.json"))}


def events_of(run: Path, kind: str) -> list[dict]:
    """The run's events of one type."""
    return [e for e in read_jsonl(run / "events.jsonl") if e["type"] == kind]


def finished(result: subprocess.CompletedProcess, run: Path) -> None:
    """Fail with the runner's words when a headless run did not finish."""
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert read_json(run / "state.json")["status"] == "finished"


def compared(name: str, record: dict) -> None:
    """The step's client TTFT and ITL were compared with vLLM's own histograms, over the same requests (the
    verdict, agree or client-side distortion, is the measurement gate's)."""
    latency, check = record["server_latency"], record["measurement"]
    assert latency["reason"] is None and latency["note"] is None, (name, latency)
    assert latency["server_requests"] == latency["client_requests"] == record["stats"]["ok"], (name, latency)
    assert check["status"] in ("agree", "client-side distortion"), (name, check)
    assert {c["metric"] for c in check["comparisons"]} == {"TTFT", "ITL"}, (name, check)
    assert latency["metrics"]["time_to_first_token"]["count"] == record["stats"]["ok"]


def cross_checked(name: str, record: dict) -> None:
    """The step's client numbers agree with vLLM's own histograms, over the same requests."""
    compared(name, record)
    assert record["measurement"]["status"] == "agree", (name, record["measurement"])


def client_vs_server_row(target: str, record: dict) -> str:
    """One Markdown row: the step's client and server TTFT and ITL means (docs/benchmarks.md's table)."""
    means = {c["metric"]: (c["client_mean_ms"], c["server_mean_ms"]) for c in record["measurement"]["comparisons"]}
    (tc, ts), (ic, is_) = means["TTFT"], means["ITL"]
    phase = record["phase"]
    return (
        f"| {target} | {phase['concurrency']} | {record['stats']['ok']} / {record['server_latency']['server_requests']}"
        f" | {tc:.1f} / {ts:.1f} ({tc - ts:+.1f}) | {ic:.2f} / {is_:.2f} | {record['measurement']['status']} |"
    )
