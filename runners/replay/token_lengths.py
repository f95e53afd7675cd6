"""Prompt lengths in tokens, as the target counts them: its `max_model_len` and its `POST /tokenize`.

A conversation fits when the tokens of its longest request plus that request's `max_tokens` are at most
`max_model_len` (vLLM refuses anything longer with HTTP 400). The longest request is the last turn with
every earlier turn and its recorded reply as history (the context `Conversation.chars` measures; for
`history = "live"` the model's own replies replace the recorded ones, so there the check is an estimate),
tokenized by the server itself: chat requests as `{"model", "messages"}` (the server applies its chat
template), completions as `{"model", "prompt"}`.

vLLM's `/v1/models` puts `max_model_len` on each model card and `POST /tokenize` answers
`{"count", "tokens", "max_model_len"}`. A target without either is not checked: the phase is sent as
before and its record says why the check was not done.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field

import httpx
import orjson

from engine.deadlines import timeout
from runners.replay.prompts import Conversation, DatasetError

TOKENIZE_DEADLINE_S = 10.0
MODELS_DEADLINE_S = 5.0
TOKENIZE_CONCURRENCY = 8
WINDOW = 32  # conversations counted per round while looking for enough that fit
EXAMPLES_KEPT = 5
NOT_ASKED = "no target was asked (the workload was prepared without a server)"

TokenCount = Callable[[dict], Awaitable[int]]


class TokenizeError(Exception):
    """`POST /tokenize` gave no count; the message names the URL and why."""


@dataclass(frozen=True)
class TokenLimit:
    """A target's context length and how to count a request body's prompt tokens on it."""

    model: str
    max_model_len: int
    count: TokenCount


def tokenize_body(endpoint: str, model: str, conv: Conversation) -> dict:
    """The `/tokenize` body of `conv`'s longest request.

    Chat: every turn with its recorded reply, then the last user turn (`messages`); completions: the last
    user turn as `prompt` (a completion request carries only its own turn).
    """
    if endpoint != "chat":
        return {"model": model, "prompt": conv.turns[-1].user}
    messages: list[dict] = []
    for turn in conv.turns[:-1]:
        messages += [{"role": "user", "content": turn.user}, {"role": "assistant", "content": turn.reply or ""}]
    messages.append({"role": "user", "content": conv.turns[-1].user})
    return {"model": model, "messages": messages}


def over_context(prompt_tokens: int, max_tokens: int, max_model_len: int) -> str | None:
    """Why a request does not fit, or None when it does: it fits when prompt_tokens + max_tokens <= max_model_len."""
    if prompt_tokens + max_tokens <= max_model_len:
        return None
    return f"{prompt_tokens} prompt tokens + max_tokens {max_tokens} > max_model_len {max_model_len}"


class TokenCounter:
    """Counts with the target's `POST /tokenize`: at most `concurrency` calls at once, each within `deadline_s`,
    one call per distinct body (`cache` may be shared by every step against one target)."""

    def __init__(
        self,
        client: httpx.AsyncClient,
        base_url: str,
        concurrency: int = TOKENIZE_CONCURRENCY,
        deadline_s: float = TOKENIZE_DEADLINE_S,
        cache: dict[bytes, int] | None = None,
    ) -> None:
        self.url = base_url.rstrip("/") + "/tokenize"
        self._client = client
        self._room = asyncio.Semaphore(concurrency)
        self._deadline_s = deadline_s
        self.cache = {} if cache is None else cache

    async def count(self, body: dict) -> int:
        """The server's `count` for `body`; raises TokenizeError (naming the URL) for any other answer."""
        key = orjson.dumps(body)
        if key in self.cache:
            return self.cache[key]
        async with self._room:
            try:
                async with timeout(self._deadline_s):
                    resp = await self._client.post(self.url, content=key, headers={"content-type": "application/json"})
            except asyncio.TimeoutError:
                raise TokenizeError(f"POST {self.url}: no answer within {self._deadline_s:g} s") from None
            except httpx.HTTPError as exc:
                raise TokenizeError(f"POST {self.url}: {type(exc).__name__}: {exc}".rstrip(": ")) from None
        if resp.status_code in (404, 405):
            raise TokenizeError(f"POST {self.url} answered HTTP {resp.status_code}: the target has no /tokenize")
        if resp.status_code != 200:
            raise TokenizeError(f"POST {self.url} answered HTTP {resp.status_code}: {resp.text.strip()[:200]}")
        try:
            count = resp.json()["count"]
        except (ValueError, KeyError, TypeError):
            count = None
        if not isinstance(count, int) or isinstance(count, bool) or count < 0:
            raise TokenizeError(f"POST {self.url} answered without an integer `count`: {resp.text.strip()[:200]}")
        self.cache[key] = count
        return count


async def model_max_len(client: httpx.AsyncClient, base_url: str, model: str) -> int | str:
    """`max_model_len` of `model`'s card in the target's `GET /v1/models`, or a sentence saying why there is none."""
    url = base_url.rstrip("/") + "/v1/models"
    try:
        async with timeout(MODELS_DEADLINE_S):
            resp = await client.get(url)
        cards = resp.json()["data"] if resp.status_code == 200 else None
    except asyncio.TimeoutError:
        return f"GET {url}: no answer within {MODELS_DEADLINE_S:g} s"
    except httpx.HTTPError as exc:
        return f"GET {url}: {type(exc).__name__}: {exc}".rstrip(": ")
    except (ValueError, KeyError, TypeError):
        cards = None
    if not isinstance(cards, list):
        return f"GET {url} answered HTTP {resp.status_code} without a model list"
    card = next((c for c in cards if isinstance(c, dict) and c.get("id") == model), None)
    value = card.get("max_model_len") if card else None
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        return f"GET {url}: the card of model {model!r} has no max_model_len"
    return value


async def target_limit(
    client: httpx.AsyncClient, base_url: str, model: str, cache: dict[bytes, int]
) -> TokenLimit | str:
    """The target's TokenLimit (counting through `client`), or why prompt lengths cannot be checked there."""
    limit = await model_max_len(client, base_url, model)
    if isinstance(limit, str):
        return limit
    return TokenLimit(model, limit, TokenCounter(client, base_url, cache=cache).count)


@dataclass
class LengthFilter:
    """Keeps the conversations whose longest request fits the target's context; remembers what it dropped.

    `limit` is the target's TokenLimit, or why there is none (then nothing is checked and nothing dropped).
    A failed count abandons the check the same way: the pool is kept whole and the report says why.
    """

    limit: TokenLimit | str
    endpoint: str
    max_tokens: int
    over: int = 0
    examples: list[str] = field(default_factory=list)
    not_done: str | None = None

    def __post_init__(self) -> None:
        if isinstance(self.limit, str):
            self.not_done = self.limit

    async def fitting(self, pool: Sequence[Conversation], needed: int | None, origin: str) -> list[Conversation]:
        """The conversations of `pool` that fit, in pool order; scanning stops once `needed` fit (None: all).

        Raises DatasetError naming `origin` when the pool is not empty and none fits.
        """
        if not isinstance(self.limit, TokenLimit):
            return list(pool)
        limit = self.limit
        kept: list[Conversation] = []
        start = 0
        while start < len(pool) and (needed is None or len(kept) < needed):
            window = pool[start : start + WINDOW]
            start += len(window)
            try:
                counts = await _all(limit.count(tokenize_body(self.endpoint, limit.model, c)) for c in window)
            except TokenizeError as exc:
                self.not_done, self.over, self.examples = f"{exc}; prompt lengths were not checked in tokens", 0, []
                return list(pool)
            for conv, tokens in zip(window, counts, strict=True):
                reason = over_context(tokens, conv.max_tokens or self.max_tokens, limit.max_model_len)
                if reason is None:
                    kept.append(conv)
                    continue
                self.over += 1
                if len(self.examples) < EXAMPLES_KEPT:
                    self.examples.append(f"{conv.source}: {reason}")
        if pool and not kept:
            raise DatasetError(
                f"{origin}: no prompt fits the target's max_model_len {limit.max_model_len} with max_tokens "
                f"{self.max_tokens} (e.g. {self.examples[0]}); lower max_tokens or use shorter prompts"
            )
        return kept

    def report(self) -> dict:
        """The token part of phase.json's `prompt_filter`: checked or why not, the limit, what was dropped."""
        checked = self.not_done is None
        return {
            "tokens_checked": checked,
            "tokens_not_checked_reason": self.not_done,
            "max_model_len": self.limit.max_model_len if isinstance(self.limit, TokenLimit) else None,
            "over_max_model_len": self.over if checked else None,
            "over_max_model_len_examples": list(self.examples),
        }


async def _all(counts) -> list[int]:
    """Await every count; on the first failure cancel the rest and raise it."""
    tasks = [asyncio.ensure_future(c) for c in counts]
    try:
        return list(await asyncio.gather(*tasks))
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
