"""The engine server over real HTTP on loopback."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from engine.env_sentinel import format_sentinel
from engine.tokenizer import encode
from runners.replay.usage_probe import probe_continuous_usage
from tests.support.processes import start_engine, stop_process
from tests.support.project import ENGINE_CONFIG, ROOT

pytestmark = pytest.mark.slow


def sse_events(resp: httpx.Response) -> list:
    """Parsed `data:` payloads of a complete SSE body, `[DONE]` kept as the string."""
    out = []
    for block in resp.text.split("\n\n"):
        if block.startswith("data: "):
            data = block[len("data: ") :]
            out.append(data if data == "[DONE]" else json.loads(data))
    return out


def test_streaming_chat_has_role_delta_content_usage_and_done(engine_url: str) -> None:
    body = {
        "messages": [{"role": "user", "content": "hi"}],
        "max_tokens": 6,
        "stream": True,
        "stream_options": {"include_usage": True},
        "ignore_eos": True,
    }
    resp = httpx.post(f"{engine_url}/v1/chat/completions", json=body, timeout=30)
    assert resp.status_code == 200 and resp.headers["content-type"].startswith("text/event-stream")
    events = sse_events(resp)
    assert events[-1] == "[DONE]"
    chunks, usage = events[:-2], events[-2]
    assert chunks[0]["choices"][0]["delta"] == {"role": "assistant", "content": ""}
    assert all(c["object"] == "chat.completion.chunk" for c in chunks)
    assert [c["choices"][0]["finish_reason"] for c in chunks[1:]] == [None] * 5 + ["length"]
    assert usage["choices"] == [] and usage["usage"]["completion_tokens"] == 6
    assert usage["usage"]["total_tokens"] == usage["usage"]["prompt_tokens"] + 6


def test_streaming_completions_with_usage_chunk(engine_url: str) -> None:
    body = {"prompt": "abc", "max_tokens": 5, "stream": True, "stream_options": {"include_usage": True},
            "ignore_eos": True, "temperature": 0}  # fmt: skip
    events = sse_events(httpx.post(f"{engine_url}/v1/completions", json=body, timeout=30))
    texts = [e["choices"][0]["text"] for e in events[:-2]]
    assert len(texts) == 5
    assert events[-2]["usage"] == {"prompt_tokens": 4, "completion_tokens": 5, "total_tokens": 9}
    plain = httpx.post(f"{engine_url}/v1/completions", json={**body, "stream": False}, timeout=30).json()
    assert plain["choices"][0]["text"] == "".join(texts)  # greedy: streamed and plain agree
    assert plain["usage"]["completion_tokens"] == 5


def test_stream_without_include_usage_has_no_usage_chunk(engine_url: str) -> None:
    body = {"prompt": "abc", "max_tokens": 3, "stream": True, "ignore_eos": True}
    events = sse_events(httpx.post(f"{engine_url}/v1/completions", json=body, timeout=30))
    assert events[-1] == "[DONE]" and len(events) == 4 and all("usage" not in e for e in events[:-1])


@pytest.mark.parametrize("path", ["/v1/chat/completions", "/v1/completions"])
def test_continuous_usage_stats_put_the_usage_so_far_on_every_chunk(engine_url: str, path: str) -> None:
    chat = path.endswith("chat/completions")
    prompt = {"messages": [{"role": "user", "content": "hi"}]} if chat else {"prompt": "abc"}
    options = {"include_usage": True, "continuous_usage_stats": True}
    body = {**prompt, "max_tokens": 4, "stream": True, "ignore_eos": True, "stream_options": options}
    events = sse_events(httpx.post(f"{engine_url}{path}", json=body, timeout=30))
    chunks, final = events[:-2], events[-2]
    counts = [c["usage"]["completion_tokens"] for c in chunks]
    assert counts == ([0] if chat else []) + [1, 2, 3, 4]  # like vLLM: the role delta has 0 completion tokens
    assert all(
        c["usage"]["total_tokens"] == c["usage"]["prompt_tokens"] + n for c, n in zip(chunks, counts, strict=True)
    )
    assert final["choices"] == [] and final["usage"]["completion_tokens"] == 4
    # as in vLLM, continuous stats need include_usage: alone they change nothing
    alone = {**body, "stream_options": {"continuous_usage_stats": True}}
    plain = sse_events(httpx.post(f"{engine_url}{path}", json=alone, timeout=30))
    assert all("usage" not in e for e in plain[:-1])


async def test_the_replay_probe_finds_continuous_usage_on_the_engine(engine_url: str) -> None:
    async with httpx.AsyncClient(timeout=10) as client:
        models = (await client.get(f"{engine_url}/v1/models")).json()
    probe = await probe_continuous_usage(engine_url, models["data"][0]["id"], "chat")
    assert probe.continuous_usage, probe.detail


@pytest.mark.serial  # /health within 1 s under load
async def test_eight_concurrent_streams_complete_while_health_answers(engine_url: str) -> None:
    async with httpx.AsyncClient(base_url=engine_url, timeout=60) as client:

        async def one(i: int) -> int:
            body = {"messages": [{"role": "user", "content": f"stream {i}"}], "max_tokens": 48, "stream": True,
                    "stream_options": {"include_usage": True}, "ignore_eos": True, "seed": i}  # fmt: skip
            async with client.stream("POST", "/v1/chat/completions", json=body) as resp:
                text = "".join([part async for part in resp.aiter_text()])
            usage = [json.loads(b[6:]) for b in text.split("\n\n") if b.startswith("data: {") and '"usage":{' in b]
            return usage[-1]["usage"]["completion_tokens"]

        streams = asyncio.gather(*(one(i) for i in range(8)))
        health_latencies = []
        while not streams.done():
            t0 = time.perf_counter()
            assert (await client.get("/health")).status_code == 200
            health_latencies.append(time.perf_counter() - t0)
            await asyncio.sleep(0.05)
        assert await streams == [48] * 8
        assert max(health_latencies) < 1.0


def test_errors_are_openai_shaped_and_say_what_is_wrong(engine_url: str) -> None:
    r = httpx.post(f"{engine_url}/v1/completions", content=b"{nope", timeout=10)
    assert r.status_code == 400 and "not valid JSON" in r.json()["error"]["message"]
    r = httpx.post(f"{engine_url}/v1/completions", json={"prompt": "x", "max_tokens": 0}, timeout=10)
    assert r.status_code == 400 and r.json()["error"]["param"] == "max_tokens"
    r = httpx.post(f"{engine_url}/v1/completions", json={"prompt": "x", "max_tokens": 9999}, timeout=10)
    assert r.status_code == 400 and "maximum context length is 4096" in r.json()["error"]["message"]
    r = httpx.post(f"{engine_url}/v1/completions", json={"prompt": "x", "model": "other"}, timeout=10)
    assert r.status_code == 404 and "`other` does not exist" in r.json()["error"]["message"]
    r = httpx.post(f"{engine_url}/v1/chat/completions", json={"messages": []}, timeout=10)
    assert r.status_code == 400 and r.json()["error"]["param"] == "messages"


def test_models_metrics_and_debug_config(engine_url: str) -> None:
    models = httpx.get(f"{engine_url}/v1/models", timeout=10).json()
    assert models["data"][0]["id"] == "gb10-tiny"
    httpx.post(f"{engine_url}/v1/completions", json={"prompt": "m", "max_tokens": 2}, timeout=30)
    metrics = httpx.get(f"{engine_url}/metrics", timeout=10).text
    for name in ("vllm:num_requests_running", "vllm:num_requests_waiting", "vllm:prompt_tokens_total",
                 "vllm:generation_tokens_total", "vllm:time_to_first_token_seconds_bucket",
                 "vllm:e2e_request_latency_seconds_count", "vllm:inter_token_latency_seconds_sum"):  # fmt: skip
        assert f"\n{name}{{" in metrics, name
    generated = [ln for ln in metrics.splitlines() if ln.startswith("vllm:generation_tokens_total{")]
    assert float(generated[0].split()[-1]) >= 2
    config = httpx.get(f"{engine_url}/debug/config", timeout=10).json()
    assert config["env"] == {"CUTE_WO_SPLIT": "8"} and config["sources"] == {"CUTE_WO_SPLIT": "env"}
    assert config["kernels"] == ("cute" if config["device"] == "cuda" else "torch")
    checks = {(c["kernel"], c["check"]): c for c in config["kernel_checks"]}
    assert {kernel.split("[")[0] for kernel, _ in checks} == {"wo_split_gemv", "paged_attention", "fused_mlp"}
    assert all(c["passed"] for c in checks.values())
    assert checks[("wo_split_gemv[wo_split=8]", "bit-exact")]["max_abs"] == 0.0


def test_sentinel_file_sets_the_split_when_env_does_not(tmp_path: Path) -> None:
    env_dir = tmp_path / "env"
    env_dir.mkdir()
    (env_dir / "ENV").write_text(format_sentinel({"CUTE_WO_SPLIT": "4"}))
    proc, url = start_engine({}, tmp_path / "serve.log", ("--env-dir", str(env_dir)))
    try:
        config = httpx.get(f"{url}/debug/config", timeout=10).json()
        assert config["env"] == {"CUTE_WO_SPLIT": "4"} and config["sources"] == {"CUTE_WO_SPLIT": "sentinel"}
    finally:
        stop_process(proc)


def test_server_refuses_to_start_with_an_unsupported_split() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "engine.server", "--config", str(ENGINE_CONFIG), "--port", "1"],
        env={"PATH": "/usr/bin:/bin", "CUTE_WO_SPLIT": "3"},
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
    )
    assert result.returncode == 2
    assert "refusing to start: CUTE_WO_SPLIT (from env): '3' is not one of 1, 2, 4, 8" in result.stderr
    assert "Traceback" not in result.stderr


def test_tokenize_counts_what_the_endpoints_feed_the_model_and_models_lists_max_model_len(engine_url: str) -> None:
    card = httpx.get(f"{engine_url}/v1/models", timeout=10).json()["data"][0]
    assert card["max_model_len"] == 4096
    prompt = httpx.post(f"{engine_url}/tokenize", json={"model": "gb10-tiny", "prompt": "héllo"}, timeout=10).json()
    assert prompt == {"count": 7, "max_model_len": 4096, "tokens": encode("héllo"), "token_strs": None}  # BOS + 6 bytes
    messages = [
        {"role": "user", "content": "Hi"},
        {"role": "assistant", "content": "Yo"},
        {"role": "user", "content": "?"},
    ]
    chat = httpx.post(f"{engine_url}/tokenize", json={"messages": messages}, timeout=10).json()
    assert chat["tokens"] == encode("<|user|>\nHi\n<|assistant|>\nYo\n<|user|>\n?\n<|assistant|>\n")
    # the count is the prompt_tokens a completion of the same prompt reports
    body = {"prompt": "héllo", "max_tokens": 1}
    done = httpx.post(f"{engine_url}/v1/completions", json=body, timeout=30).json()
    assert done["usage"]["prompt_tokens"] == prompt["count"]
    both = httpx.post(f"{engine_url}/tokenize", json={"prompt": "a", "messages": messages}, timeout=10)
    assert both.status_code == 400 and "either prompt" in both.json()["error"]["message"]
    other = httpx.post(f"{engine_url}/tokenize", json={"model": "other", "prompt": "a"}, timeout=10)
    assert other.status_code == 404 and "`other` does not exist" in other.json()["error"]["message"]
