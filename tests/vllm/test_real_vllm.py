"""Soaks and the bench client against a real vLLM, as an external and as a process target.

What is checked is what a reviewer relies on: every phase kind runs to DONE against vLLM, the client's
TTFT and ITL agree with vLLM's own histograms (the step's server-side cross-check), the arm's env is
verified inside vLLM's EngineCore by gb10-vllm-plugin (`make vllm` installs it), and the profiler's
traces reach the run directory, also from a stop that had to be killed.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from runners.replay.server_latency import Snapshot, delta, parse_histograms
from runners.run.files import read_json
from runners.testbed.vllm_target import MAX_MODEL_LEN, VllmServer, process_serve_toml, unavailable
from tests.support.plans import phases_toml
from tests.support.processes import run_headless
from tests.support.project import ROOT, SHARED
from tests.support.vllm_runs import PROFILED_STEP, cross_checked, events_of, finished, phase_records

pytestmark = [pytest.mark.slow, pytest.mark.serial]  # serial: client vs vLLM histogram agreement, and CPU-heavy

SHAREGPT = SHARED / "data" / "sharegpt" / "sharegpt_v3_filtered_500.json"
GSM8K_DIR = SHARED / "data" / "gsm8k"
RUN_TIMEOUT_S = 600


def sharegpt_toml(with_shared: bool) -> str:
    """The ShareGPT phase: 16 requests at concurrency 4."""
    dataset = json.dumps(str(SHAREGPT)) if with_shared else '"builtin"'
    return f"""
[[phases]]
name = "sharegpt"
kind = "sharegpt"
dataset = {dataset}
requests = 16
concurrency = 4
max_tokens = 32
ignore_eos = true
http_timeout_s = 60
deadline_s = 240
"""


CONCURRENT = """
[[phases]]
name = "concurrent"
kind = "concurrent"
streams = 4
max_tokens = 32
ignore_eos = true
http_timeout_s = 60
deadline_s = 240
"""


def every_kind_toml(with_shared: bool) -> str:
    """Every replay phase kind, small: vLLM on 2 CPU cores decodes ~100-200 tokens/s in all."""
    text = (
        sharegpt_toml(with_shared)
        + CONCURRENT
        + """
[[phases]]
name = "longdecode"
kind = "longdecode"
requests = 2
max_tokens = 256
http_timeout_s = 120
deadline_s = 240
"""
    )
    if with_shared:
        text += f"""
[[phases]]
name = "gsm8k"
kind = "gsm8k"
test_file = {json.dumps(str(GSM8K_DIR / "test.jsonl"))}
train_file = {json.dumps(str(GSM8K_DIR / "train.jsonl"))}
questions = 4
fewshot = 1
max_tokens = 48
http_timeout_s = 60
deadline_s = 240
"""
    return text


def external_plan(directory: Path, url: str) -> Path:
    """One arm against the session's vLLM, every phase kind."""
    path = directory / "plan.toml"
    path.write_text(
        f"""
name = "vllm-external"
[serve]
kind = "external"
url = "{url}"
ready_timeout_s = 60

[[arms]]
name = "vllm"
{every_kind_toml(SHARED.exists())}
"""
    )
    return path


# Supplementary steps under vLLM's torch profiler. A stop writes the worker's trace a quarter of the way through,
# then builds its table (4 requests of 32 tokens: trace after 0.8 s, stop 3.3 s): the second step profiles
# about 4.5 times the work, so its stop takes ~13 s with the trace on disk after ~3.5 s, and a 6.5 s deadline
# kills it in between with a margin of about 2 either way.
PROFILED = phases_toml([
    PROFILED_STEP,
    {**PROFILED_STEP, "name": "profiled-killed", "profile_stop_timeout_s": 6.5, "requests": 12, "max_tokens": 48},
])  # fmt: skip


def process_plan(directory: Path) -> Path:
    """One arm whose runner starts vLLM itself (profiler on): ShareGPT and concurrent steps, then two profiled
    supplementary ones; the phase kinds the external soak covers are left to it."""
    path = directory / "plan.toml"
    path.write_text(
        f"""
name = "vllm-process"
{process_serve_toml(profiler=True)}
[[arms]]
name = "vllm"
env = {{ GB10_ARM_TAG = "candidate-a" }}
{sharegpt_toml(SHARED.exists())}{CONCURRENT}{PROFILED}
"""
    )
    return path


def env_plan(directory: Path) -> Path:
    """Arms that must not be judged: one whose server forces another value than the arm's (the EngineCore runs
    `GB10_FORCED=default`), one whose vLLM does not load the plugin (VLLM_PLUGINS names another)."""
    path = directory / "plan.toml"
    path.write_text(
        f"""
name = "vllm-env"
{process_serve_toml(wrapper=("env", "GB10_FORCED=default"))}
[[arms]]
name = "noplugin"
env = {{ GB10_ARM_TAG = "b", VLLM_PLUGINS = "lora_filesystem_resolver" }}

[[arms]]
name = "mismatch"
env = {{ GB10_FORCED = "candidate" }}

[[phases]]
name = "short"
kind = "sharegpt"
requests = 2
concurrency = 1
max_tokens = 8
http_timeout_s = 60
deadline_s = 120
"""
    )
    return path


@pytest.fixture(scope="module")
def external_run(vllm_external: VllmServer, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One soak of every phase kind against the session's vLLM, as an external target."""
    directory = tmp_path_factory.mktemp("vllm-external")
    run = directory / "run"
    finished(run_headless(external_plan(directory, vllm_external.url), run, timeout_s=RUN_TIMEOUT_S), run)
    return run


def test_every_phase_kind_runs_to_done_against_vllm_and_agrees_with_its_histograms(external_run: Path) -> None:
    phases = phase_records(external_run)
    expected = {"sharegpt", "longdecode", "concurrent"} | ({"gsm8k"} if SHARED.exists() else set())
    assert set(phases) == expected
    for name, record in phases.items():
        stats = record["stats"]
        assert stats["ok"] == stats["requests"] > 0, (name, stats["errors"])
        assert stats["output_tokens_from_chunks"] == 0  # vLLM reports usage
        assert record["itl_basis"] == "per_token" and record["usage_probe"]["continuous_usage"], name
        assert record["prompt_filter"]["tokens_checked"] and record["prompt_filter"]["max_model_len"] == MAX_MODEL_LEN
        sampled = record["server_metrics"]
        if sampled["scrapes_ok"] >= 3:
            assert sampled["not_sampled"] == {} and sampled["num_requests_running_max"] is not None, (name, sampled)
        else:  # the concurrent probe lasts about half a second: its gauges say so, never a 0 nobody saw
            gauges = {"kv_cache_usage_perc", "num_requests_running", "num_requests_waiting"}
            assert set(sampled["not_sampled"]) == gauges, (name, sampled)
            assert sampled["num_requests_running_max"] is None
        assert record["server_metrics"]["prefix_cache_queries_increase"] > 0, name
        cross_checked(name, record)
    assert phases["concurrent"]["stats"]["ok"] == 4
    assert phases["longdecode"]["stats"]["output_tokens"] == 2 * 256
    summary = (external_run / "summary.md").read_text()
    assert "Client vs server latency" in summary


def test_a_process_target_vllm_is_measured_verified_and_profiled(tmp_path: Path) -> None:
    reason = unavailable()
    if reason:
        pytest.skip(reason)
    run = tmp_path / "run"
    finished(run_headless(process_plan(tmp_path), run, timeout_s=RUN_TIMEOUT_S), run)
    phases = phase_records(run)
    assert set(phases) == {"sharegpt", "concurrent", "profiled", "profiled-killed"}
    for name in ("sharegpt", "concurrent"):
        record = phases[name]
        stats = record["stats"]
        assert stats["ok"] == stats["requests"] > 0, (name, stats["errors"])
        # chunks leave vLLM once per decode step: a burst (several chunks read at once) shows as ITL ~ 0
        assert stats["itl_chunk_p50_ms"] > 1.0, (name, stats["distributions"]["itl_chunk_ms"])
        cross_checked(name, record)

    # the arm's env, verified inside vLLM's EngineCore in both sessions (the kill was the last step: no restart)
    verified = events_of(run, "env_verified")
    assert len(verified) == 2 and all(e["where"].startswith("EngineCore pid ") for e in verified), verified
    assert all("(vLLM 0.32" in e["where"] and e["reported"]["GB10_ARM_TAG"] == "candidate-a" for e in verified)
    effective = read_json(run / "arms" / "vllm" / "effective.json")
    roles = {role for p in effective["processes"] for role in p["roles"]}
    assert {"api_server", "EngineCore", "worker"} <= roles, effective["processes"]

    # a profiled step: vLLM's traces collected into the step, its CPU ops in phase.json and summary.md
    captured = phases["profiled"]["profile"]
    assert captured["status"] == "captured" and captured["stop_s"] < 120, captured
    step = run / "arms" / "vllm" / "supplementary" / "profiled" / "0"
    assert Path(captured["trace"]).parent == step / "profile" and Path(captured["trace"]).name.startswith("rank0.")
    assert any(".async_llm." in f for f in captured["files"]) and any("profiler_out" in f for f in captured["files"])
    kernels = captured["kernels"]
    assert kernels["source"] == "cpu" and kernels["rows"], kernels
    assert any(r["name"].startswith("aten::") and r["n_calls"] > 0 and r["mean_us"] > 0 for r in kernels["rows"])
    summary = (run / "summary.md").read_text()
    assert "## Profiled steps" in summary and f"`{kernels['rows'][0]['name']}`" in summary

    # a stop past its deadline: the target is killed, the trace it had written is kept
    killed = phases["profiled-killed"]["profile"]
    assert killed["status"] == "recovered after kill", killed
    assert "did not answer within 6.5 s" in killed["reason"] and Path(killed["trace"]).is_file()
    assert events_of(run, "profile_recovered") and events_of(run, "serve_killed")
    assert "trace recovered after kill: vllm/supplementary/profiled-killed/0" in summary


def test_vllm_arms_whose_env_is_not_proven_get_no_verdict(tmp_path: Path) -> None:
    reason = unavailable()
    if reason:
        pytest.skip(reason)
    run = tmp_path / "run"
    result = run_headless(env_plan(tmp_path), run, timeout_s=RUN_TIMEOUT_S)
    assert result.returncode in (0, 1), result.stdout[-3000:] + result.stderr[-3000:]
    mismatch = events_of(run, "env_mismatch")
    assert len(mismatch) == 1 and mismatch[0]["arm"] == "mismatch", mismatch
    assert mismatch[0]["where"].startswith("EngineCore pid"), mismatch
    assert "GB10_FORCED: want 'candidate', the process runs 'default'" in mismatch[0]["mismatches"]
    assert not (run / "arms" / "mismatch" / "primary" / "short" / "0" / "requests.jsonl").exists()  # not measured
    unverified = events_of(run, "env_unverified")
    assert [e["arm"] for e in unverified] == ["noplugin"]
    assert "no vLLM process reported its env" in unverified[0]["reason"]
    summary = read_json(run / "summary.json")
    verdicts = {a["arm"]: a["verdict"] for a in summary["arms"]}
    assert verdicts == {"noplugin": "no verdict", "mismatch": "no verdict"}, verdicts
    env_gates = {g["arm"]: g for g in summary["gates"] if g["name"] == "env"}
    assert env_gates["noplugin"]["status"] == "fail" and "env unverified" in env_gates["noplugin"]["failed_criteria"][0]


def histograms(url: str) -> Snapshot:
    """vLLM's latency histograms now."""
    return parse_histograms(httpx.get(f"{url}/metrics", timeout=5.0).text)


def test_bench_client_against_vllm_agrees_with_its_histograms(vllm_external: VllmServer, tmp_path: Path) -> None:
    before = histograms(vllm_external.url)
    out = tmp_path / "bench.json"
    result = subprocess.run(
        [sys.executable, "-m", "console.cli", "bench", "client", "--url", vllm_external.url, "--concurrency", "4",
         "--requests", "12", "--max-tokens", "32", "--json", str(out)],
        capture_output=True, text=True, timeout=300, cwd=ROOT,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    bench = json.loads(out.read_text())
    assert bench["ok"] == 12 and bench["failed"] == 0
    assert bench["itl_basis"] == "per_token" and bench["e2el_ms"]["count"] == 12
    served = delta(before, histograms(vllm_external.url)).stats
    assert served["e2e_request_latency"].count == 12 + 1  # and the usage probe's request
    server_ttft = served["time_to_first_token"].mean_ms
    assert abs(bench["ttft_ms"]["mean"] - server_ttft) <= max(25.0, 0.5 * server_ttft), (bench["ttft_ms"], server_ttft)
