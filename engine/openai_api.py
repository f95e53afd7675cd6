"""OpenAI-compatible request models and response bodies (the subset vLLM clients use)."""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from engine.sampling import SamplingParams


class StreamOptions(BaseModel):
    """`stream_options`: `include_usage`, and `continuous_usage_stats` (vLLM: usage on every chunk too)."""

    model_config = ConfigDict(extra="ignore")
    include_usage: bool = False
    continuous_usage_stats: bool = False


@dataclass(frozen=True)
class StreamUsage:
    """Where a streamed response puts `usage`, as vLLM does.

    With `include_usage` a trailing chunk with empty `choices` carries the totals and every other
    chunk says `"usage": null`; with `continuous_usage_stats` as well, every chunk carries the usage
    so far instead (the role-only delta: 0 completion tokens).
    """

    final: bool = False
    continuous: bool = False

    def on_chunk(self, prompt_tokens: int, completion_tokens: int) -> dict:
        """The `usage` entry of a chunk sent when `completion_tokens` exist (nothing without include_usage)."""
        if self.continuous:
            return {"usage": usage(prompt_tokens, completion_tokens)}
        return {"usage": None} if self.final else {}


class _Common(BaseModel):
    model_config = ConfigDict(extra="ignore")

    model: str | None = None
    temperature: float = Field(1.0, ge=0.0, le=10.0)
    top_p: float = Field(1.0, gt=0.0, le=1.0)
    top_k: int = Field(0, ge=-1)
    seed: int | None = None
    ignore_eos: bool = False
    stop: str | list[str] | None = None
    stream: bool = False
    stream_options: StreamOptions | None = None
    n: int = Field(1, ge=1, le=1)

    def stop_strings(self) -> tuple[str, ...]:
        """`stop` as a tuple of non-empty strings."""
        if self.stop is None:
            return ()
        stops = [self.stop] if isinstance(self.stop, str) else self.stop
        return tuple(s for s in stops if s)

    def stream_usage(self) -> StreamUsage:
        """Where a streaming response puts `usage` (continuous stats only together with include_usage, as vLLM)."""
        options = self.stream_options
        final = bool(self.stream and options and options.include_usage)
        return StreamUsage(final, final and bool(options and options.continuous_usage_stats))

    def sampling(self, max_tokens: int) -> SamplingParams:
        """Sampling parameters for the engine."""
        return SamplingParams(
            max_tokens=max_tokens,
            temperature=self.temperature,
            top_p=self.top_p,
            top_k=max(self.top_k, 0),
            seed=self.seed,
            ignore_eos=self.ignore_eos,
            stop=self.stop_strings(),
        )


class CompletionRequest(_Common):
    """`POST /v1/completions`: one prompt, as text or token ids."""

    prompt: str | list[str] | list[int]
    max_tokens: int | None = Field(16, ge=1)


class ChatMessage(BaseModel):
    """One chat turn; content may be text or a list of `{"type": "text", "text": ...}` parts."""

    model_config = ConfigDict(extra="ignore")
    role: Literal["system", "user", "assistant", "tool", "developer"]
    content: str | list[dict[str, Any]] | None = None

    def text(self) -> str:
        """The message's text, joining text parts."""
        if self.content is None:
            return ""
        if isinstance(self.content, str):
            return self.content
        return "".join(str(p.get("text", "")) for p in self.content if p.get("type") == "text")


class ChatCompletionRequest(_Common):
    """`POST /v1/chat/completions`."""

    messages: list[ChatMessage] = Field(min_length=1)
    max_tokens: int | None = Field(None, ge=1)
    max_completion_tokens: int | None = Field(None, ge=1)

    def requested_max_tokens(self) -> int | None:
        """`max_completion_tokens` wins over the older `max_tokens`, as in OpenAI's API."""
        return self.max_completion_tokens or self.max_tokens


class TokenizeRequest(BaseModel):
    """`POST /tokenize` as vLLM takes it: a completion `prompt`, or chat `messages` (the chat template applied)."""

    model_config = ConfigDict(extra="ignore")
    model: str | None = None
    prompt: str | None = None
    messages: list[ChatMessage] | None = Field(None, min_length=1)


def new_id(prefix: str) -> str:
    """A response id such as `cmpl-3f2a...`."""
    return f"{prefix}-{uuid.uuid4().hex}"


def now() -> int:
    """Unix seconds, for `created`."""
    return int(time.time())


def usage(prompt_tokens: int, completion_tokens: int) -> dict[str, int]:
    """An OpenAI usage object."""
    return {
        "prompt_tokens": prompt_tokens,
        "completion_tokens": completion_tokens,
        "total_tokens": prompt_tokens + completion_tokens,
    }


def error_body(message: str, kind: str = "BadRequestError", code: int = 400, param: str | None = None) -> dict:
    """An OpenAI error object."""
    return {"error": {"message": message, "type": kind, "param": param, "code": code}}
