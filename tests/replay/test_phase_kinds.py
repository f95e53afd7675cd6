"""Every phase kind in one plan, run headless against the real embedded engine."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from engine.config_file import ConfigFileError
from runners.plan.load import load_plan
from runners.replay.workloads import prepare
from runners.run.files import read_json, read_jsonl
from tests.support.hub_server import LoopbackHf
from tests.support.plans import Plan, engine_serve, sharegpt_phase
from tests.support.project import ROOT, copy_data

pytestmark = pytest.mark.slow

INPUTS = "phase-kinds"  # tests/data/phase-kinds: GSM8K test and train lines, a trace, ShareGPT chats
PLAN = Plan(
    "kinds",
    engine_serve(ready_timeout_s=60),
    [{"name": "split4", "env": {"CUTE_WO_SPLIT": 4}}],
    [
        sharegpt_phase("chat-live", dataset="chats.json", requests=2, max_turns=3, history="live",
                       max_prompt_chars=1000, max_tokens=8, arrival="poisson", rate=20, slo_ttft_ms=60000,
                       metrics_interval_s=0.2),
        {"name": "long", "kind": "longdecode", "requests": 2, "concurrency": 2, "max_tokens": 48},
        {"name": "gsm8k", "kind": "gsm8k", "test_file": "test.jsonl", "train_file": "train.jsonl", "questions": 3,
         "fewshot": 2, "max_tokens": 12, "concurrency": 3},
        {"name": "probe", "kind": "concurrent", "streams": 4, "max_tokens": 6},
        {"name": "trace", "kind": "trace", "trace": "trace.jsonl", "time_scale": 0.5},
    ],
).text()  # fmt: skip


def test_every_phase_kind_runs_in_a_plan_with_results_in_the_run_dir_and_summary(tmp_path: Path) -> None:
    copy_data(INPUTS, tmp_path)
    (tmp_path / "plan.toml").write_text(PLAN)
    out = tmp_path / "run"
    result = subprocess.run(
        [sys.executable, "-m", "console.cli", "run", str(tmp_path / "plan.toml"), "--headless", "--out", str(out)],
        capture_output=True, text=True, timeout=240, cwd=ROOT,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    step = out / "arms" / "split4" / "primary"

    # sharegpt, live multi-turn: the 5000-char conversation never took a slot; turns carry the model's answers
    chat = read_jsonl(step / "chat-live" / "0" / "requests.jsonl")
    assert sorted((r["conversation"], r["turn"]) for r in chat) == sorted([("sharegpt:multi", t) for t in range(3)] * 2)
    assert all(r["status"] == "ok" for r in chat)
    first = next(r for r in chat if r["turn"] == 1)
    assert first["prompt_chars"] != len("Name a colour.") + len("Blue.") + len("Another one?")
    phase = read_json(step / "chat-live" / "0" / "phase.json")
    assert phase["stats"]["goodput_req_s"] > 0 and phase["stats"]["distributions"]["ttft_ms"]["count"] == 6
    metrics = phase["server_metrics"]
    assert metrics["scrapes_ok"] >= 3 and metrics["num_requests_running_max"] >= 0 and metrics["not_sampled"] == {}
    # the 5000-char conversation was dropped for characters; the rest were counted in tokens by the engine
    assert phase["prompt_filter"] | {"over_max_model_len_examples": []} == {
        "max_prompt_chars": 1000, "over_max_prompt_chars": 1, "tokens_checked": True,
        "tokens_not_checked_reason": None, "max_model_len": 4096, "over_max_model_len": 0,
        "over_max_model_len_examples": [],
    }  # fmt: skip
    assert (step / "chat-live" / "0" / "server_metrics.jsonl").is_file()

    # longdecode: every output was checked; the report says what it found
    long = read_json(step / "long" / "0" / "phase.json")
    assert long["coherence"]["checked"] == 2
    assert len(read_jsonl(step / "long" / "0" / "coherence.jsonl")) == 2
    assert all(r["output_tokens"] == 48 for r in read_jsonl(step / "long" / "0" / "requests.jsonl"))

    # gsm8k: one scored line per question with the response kept
    gsm = read_json(step / "gsm8k" / "0" / "phase.json")["gsm8k"]
    assert gsm["n"] == 3 and 0 <= gsm["strict_correct"] <= 3
    scored = read_jsonl(step / "gsm8k" / "0" / "gsm8k.jsonl")
    assert len(scored) == 3 and all(isinstance(s["response"], str) for s in scored)
    sent = read_jsonl(step / "gsm8k" / "0" / "requests.jsonl")
    assert all(r["endpoint"] == "completions" for r in sent)

    # concurrent: four streams scheduled at the same instant
    probe = read_jsonl(step / "probe" / "0" / "requests.jsonl")
    assert len(probe) == 4 and {r["scheduled_ns"] for r in probe} == {0}

    # trace: sent on the trace's (scaled) clock, output lengths from the trace
    trace = sorted(read_jsonl(step / "trace" / "0" / "requests.jsonl"), key=lambda r: r["index"])
    assert [r["scheduled_ns"] // 1_000_000 for r in trace] == [0, 100, 200, 300]
    assert [r["max_tokens"] for r in trace] == [6, 6, 4, 6]
    assert [r["output_tokens"] for r in trace] == [6, 6, 4, 6]

    summary = (out / "summary.md").read_text()
    for kind in ("sharegpt", "longdecode", "gsm8k", "concurrent", "trace"):
        assert f"| {kind} | done |" in summary
    assert "GSM8K strict" in summary and "coherence warnings" in summary and "goodput" in summary
    assert "prompts dropped: 1 over max_prompt_chars" in summary


async def test_trace_prompts_share_prefixes_by_hash_id(tmp_path: Path) -> None:
    copy_data(INPUTS, tmp_path)
    (tmp_path / "plan.toml").write_text(PLAN)
    loaded = load_plan(tmp_path / "plan.toml")
    workload = await prepare(loaded.plan.phase("trace"), loaded)
    prompts = [c.turns[0].user for c in workload.conversations]
    assert [len(p) for p in prompts] == [40, 40, 20, 50]
    assert prompts[0][:20] == prompts[1][:20] == prompts[2][:20]  # hash id 1 leads all three
    assert prompts[3][:20] != prompts[0][:20]
    assert workload.arrivals.offsets == [0.0, 0.1, 0.2, 0.3]


def test_phase_kind_errors_name_the_field(tmp_path: Path) -> None:
    copy_data(INPUTS, tmp_path)
    bad = PLAN.replace("rate = 20\n", "").replace('kind = "gsm8k"\n', 'kind = "gsm8k"\nendpoint = "chat"\n')
    bad = bad.replace('trace = "trace.jsonl"', 'trace = "missing.jsonl"')
    (tmp_path / "plan.toml").write_text(bad)
    with pytest.raises(ConfigFileError) as err:
        load_plan(tmp_path / "plan.toml")
    text = str(err.value)
    assert 'phases[0]: arrival = "poisson" needs rate' in text
    assert "phases[2].endpoint: gsm8k is scored on raw completions" in text
    bad = PLAN.replace('trace = "trace.jsonl"', 'trace = "missing.jsonl"')
    (tmp_path / "plan.toml").write_text(bad)
    with pytest.raises(ConfigFileError, match=r"phases\[4\]\.trace: .*missing.jsonl does not exist"):
        load_plan(tmp_path / "plan.toml")


async def test_the_example_plan_with_every_kind_loads(hf_cached: LoopbackHf) -> None:
    """configs/workloads.toml, its GSM8K read by name from the (loopback Hub's) pulled cache."""
    loaded = load_plan(ROOT / "configs" / "workloads.toml")
    assert sorted({p.kind for p in loaded.plan.phases}) == ["concurrent", "gsm8k", "longdecode", "sharegpt", "trace"]
    gsm8k = await prepare(loaded.plan.phase("gsm8k"), loaded)
    assert len(gsm8k.conversations) == 20 and all(c.chars <= 3800 for c in gsm8k.conversations)
