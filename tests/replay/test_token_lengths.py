"""Prompt lengths in tokens: the filter with a fake count, the target's /tokenize and max_model_len over HTTP,
and a replay against the engine where a prompt too long for its context is dropped, with its reason, unsent."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import httpx
import pytest

from engine.tokenizer import apply_chat_template, encode
from runners.plan.load import load_plan
from runners.replay.dispatch import replay
from runners.replay.prompts import Conversation, DatasetError, Turn
from runners.replay.token_lengths import (
    LengthFilter,
    TokenCounter,
    TokenizeError,
    TokenLimit,
    model_max_len,
    over_context,
    target_limit,
    tokenize_body,
)
from runners.replay.workloads import prepare
from runners.testbed.mock_server import MockSettings
from tests.support.mock import StartMock
from tests.support.plans import Plan, engine_serve, sharegpt_phase


def conv(source: str, chars: int, max_tokens: int | None = None) -> Conversation:
    return Conversation(source, (Turn("x" * chars),), max_tokens=max_tokens)


class FakeCount:
    """One token per prompt character; records the sources it was asked about; fails on `fail_on`."""

    def __init__(self, fail_on: str | None = None) -> None:
        self.asked: list[str] = []
        self.fail_on = fail_on

    async def __call__(self, body: dict) -> int:
        text = body["prompt"]
        self.asked.append(text)
        if self.fail_on is not None and text == self.fail_on:
            raise TokenizeError("POST http://127.0.0.1:1/tokenize answered HTTP 500: boom")
        return len(text)


def test_over_context_is_vllms_rule() -> None:
    assert over_context(90, 10, 100) is None  # exactly full fits
    assert over_context(91, 10, 100) == "91 prompt tokens + max_tokens 10 > max_model_len 100"


def test_tokenize_body_is_the_longest_request_of_a_conversation() -> None:
    c = Conversation("c", (Turn("q1", "a1"), Turn("q2", "a2"), Turn("q3")))
    assert tokenize_body("chat", "m", c) == {"model": "m", "messages": [
        {"role": "user", "content": "q1"}, {"role": "assistant", "content": "a1"},
        {"role": "user", "content": "q2"}, {"role": "assistant", "content": "a2"}, {"role": "user", "content": "q3"},
    ]}  # fmt: skip
    assert tokenize_body("completions", "m", c) == {"model": "m", "prompt": "q3"}


async def test_filter_drops_what_does_not_fit_and_stops_once_enough_fit() -> None:
    count = FakeCount()
    lengths = LengthFilter(TokenLimit("m", 100, count), "completions", max_tokens=20)
    pool = [conv("a", 10), conv("long", 81), conv("b", 80), conv("own-budget", 60, max_tokens=50), conv("c", 5)]
    kept = await lengths.fitting(pool, needed=None, origin="t")
    assert [c.source for c in kept] == ["a", "b", "c"]
    report = lengths.report()
    assert report == {
        "tokens_checked": True,
        "tokens_not_checked_reason": None,
        "max_model_len": 100,
        "over_max_model_len": 2,
        "over_max_model_len_examples": [
            "long: 81 prompt tokens + max_tokens 20 > max_model_len 100",
            "own-budget: 60 prompt tokens + max_tokens 50 > max_model_len 100",
        ],
    }
    # with a need, counting stops after the window in which enough fit (the pool is not counted whole)
    count = FakeCount()
    big = [conv(f"p{i}", i % 7) for i in range(200)]
    kept = await LengthFilter(TokenLimit("m", 100, count), "completions", 20).fitting(big, needed=3, origin="t")
    assert len(count.asked) == 32 and [c.source for c in kept[:3]] == ["p0", "p1", "p2"]


async def test_failed_count_or_no_limit_leaves_the_pool_whole_and_says_why() -> None:
    pool = [conv("a", 10), conv("b", 500)]
    failing = LengthFilter(TokenLimit("m", 100, FakeCount(fail_on="x" * 500)), "completions", 20)
    assert await failing.fitting(pool, None, "t") == pool
    report = failing.report()
    assert report["tokens_checked"] is False and report["over_max_model_len"] is None
    assert "HTTP 500: boom; prompt lengths were not checked in tokens" in report["tokens_not_checked_reason"]
    unchecked = LengthFilter("GET u/v1/models: the card of model 'm' has no max_model_len", "chat", 20)
    assert await unchecked.fitting(pool, 1, "t") == pool
    assert unchecked.report()["tokens_not_checked_reason"].endswith("has no max_model_len")
    with pytest.raises(DatasetError, match=r"t: no prompt fits the target's max_model_len 100 with max_tokens 20"):
        await LengthFilter(TokenLimit("m", 100, FakeCount()), "completions", 20).fitting([pool[1]], None, "t")


@pytest.mark.slow
async def test_engine_counts_and_caches_and_the_mock_server_cannot(engine_url: str, start_mock: StartMock) -> None:
    async with httpx.AsyncClient(timeout=10) as client:
        cache: dict[bytes, int] = {}
        limit = await target_limit(client, engine_url, "gb10-tiny", cache)
        assert isinstance(limit, TokenLimit) and limit.max_model_len == 4096
        c = Conversation("c", (Turn("Say hi.", "Hi."), Turn("Again?")))
        chat = await limit.count(tokenize_body("chat", "gb10-tiny", c))
        template = apply_chat_template([("user", "Say hi."), ("assistant", "Hi."), ("user", "Again?")])
        assert chat == len(encode(template))
        assert list(cache.values()) == [chat]
        cache[next(iter(cache))] = -1  # a second count of the same body is the cached one, not another call
        assert await limit.count(tokenize_body("chat", "gb10-tiny", c)) == -1

        mock_url = await start_mock(MockSettings())
        reason = await model_max_len(client, mock_url, "mock")
        assert reason == f"GET {mock_url}/v1/models: the card of model 'mock' has no max_model_len"
        with pytest.raises(TokenizeError, match=r"answered HTTP 404: the target has no /tokenize"):
            await TokenCounter(client, mock_url).count({"model": "mock", "prompt": "x"})


PLAN = Plan(
    "fit", engine_serve(), [{"name": "a"}],
    [sharegpt_phase("chat", dataset="chats.json", requests=4, max_tokens=8, max_prompt_chars=100000, concurrency=2)],
).text()  # fmt: skip


@pytest.mark.slow
async def test_a_prompt_too_long_for_the_engine_is_dropped_with_its_reason_and_never_sent(
    tmp_path: Path, engine_url: str
) -> None:
    # 4090 characters fit max_prompt_chars but not 4096 tokens once BOS, the chat template and max_tokens count
    chats = [
        {"id": "too-long", "conversations": [{"from": "human", "value": "y" * 4090}]},
        {"id": "short", "conversations": [{"from": "human", "value": "Name a colour."}]},
    ]
    (tmp_path / "chats.json").write_text(json.dumps(chats))
    (tmp_path / "plan.toml").write_text(PLAN)
    loaded = load_plan(tmp_path / "plan.toml")
    async with httpx.AsyncClient(timeout=10) as client:
        limit = await target_limit(client, engine_url, "gb10-tiny", {})
        workload = await prepare(loaded.plan.phase("chat"), loaded, limit=limit)
    assert [c.source for c in workload.conversations] == ["sharegpt:short"] * 4  # the slot went to a prompt that fits
    tokens = len(encode(apply_chat_template([("user", "y" * 4090)])))
    assert workload.prompt_filter == {
        "max_prompt_chars": 100000,
        "over_max_prompt_chars": 0,
        "tokens_checked": True,
        "tokens_not_checked_reason": None,
        "max_model_len": 4096,
        "over_max_model_len": 1,
        "over_max_model_len_examples": [
            f"sharegpt:too-long: {tokens} prompt tokens + max_tokens 8 > max_model_len 4096"
        ],
    }
    outcome = await replay(engine_url, "gb10-tiny", workload.conversations, workload.shape, workload.arrivals,
                           lambda _: None, asyncio.Event())  # fmt: skip
    assert len(outcome.records) == 4 and all(r.status == "ok" for r in outcome.records)
    assert {r.prompt_source for r in outcome.records} == {"sharegpt:short"}
