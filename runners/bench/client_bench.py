"""`bench client`: the soak's own replay path at fixed concurrency, with the client's cost measured.

It runs exactly what a soak step runs (runners.replay.dispatch), so its numbers say how far the
client itself can be trusted: completed req/s, output tok/s, the CPU seconds the client process
spent, dispatch lag p99 (how late requests left against their schedule), and TTFT/ITL/TPOT/E2EL.
Prompts are the built-ins, or with `input_len` prompts of that many tokens (runners.bench.input_len);
like a step, it first probes whether the server sends usage on every chunk, which makes ITL per token.
"""

from __future__ import annotations

import asyncio
import resource
from dataclasses import asdict, dataclass, replace
from typing import Literal

import httpx

from engine.deadlines import timeout
from runners.bench.input_len import DISTINCT_PROMPTS, InputLength, sized_prompts
from runners.replay.dispatch import Arrivals, RequestShape, replay
from runners.replay.metrics import Distribution, ItlBasis, phase_stats
from runners.replay.prompts import Conversation, builtin_conversations, cycle
from runners.replay.token_lengths import TOKENIZE_DEADLINE_S, TokenCounter
from runners.replay.usage_probe import probe_continuous_usage
from runners.serve.readiness import model_id
from runners.serve.runtime import ServeError

MODEL_DEADLINE_S = 5.0


class BenchError(Exception):
    """The benchmark cannot run; the message names the URL and what to do."""


@dataclass(frozen=True)
class ClientBenchResult:
    """One benchmark run; latencies in ms, CPU in seconds of this process (user + system)."""

    url: str
    endpoint: str
    concurrency: int
    requests: int
    ok: int
    failed: int
    wall_s: float
    req_s: float | None
    output_tok_s: float | None
    cpu_s: float
    dispatch_lag_p99_ms: float | None
    ttft_ms: Distribution
    itl_ms: Distribution
    itl_basis: ItlBasis
    tpot_ms: Distribution
    e2el_ms: Distribution
    errors: dict[str, int]
    input_len: InputLength | None = None  # None: the built-in prompts

    def as_dict(self) -> dict:
        """JSON form."""
        return asdict(self)


def _cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


async def _model_id(url: str) -> str:
    """The first model the server lists; BenchError when it does not answer."""
    try:
        async with timeout(MODEL_DEADLINE_S), httpx.AsyncClient(base_url=url) as client:
            return await model_id(client)
    except (TimeoutError, httpx.HTTPError, ServeError) as exc:
        raise BenchError(
            f"{url}/v1/models did not list a model ({type(exc).__name__}: {exc}); is the server up? "
            "`gb10-console bench mock-server --port P` starts one"
        ) from None


async def bench_client(
    url: str,
    concurrency: int,
    requests: int,
    endpoint: Literal["chat", "completions"] = "chat",
    max_tokens: int = 64,
    http_timeout_s: float = 60.0,
    input_len: int | None = None,
) -> ClientBenchResult:
    """Send `requests` streaming requests at `concurrency` to `url` and measure client and server.

    With `input_len` the prompts are that many tokens long (counted by the server where it can, else
    approximate: the result's `input_len` says which).
    """
    url = url.rstrip("/")
    model = await _model_id(url)
    sized: InputLength | None = None
    pool: list[Conversation] = builtin_conversations()
    if input_len is not None:
        async with httpx.AsyncClient(timeout=httpx.Timeout(TOKENIZE_DEADLINE_S)) as client:
            counter = TokenCounter(client, url).count
            pool, sized = await sized_prompts(counter, endpoint, model, input_len, min(requests, DISTINCT_PROMPTS))
    conversations = cycle(pool, requests)
    shape = RequestShape(endpoint=endpoint, max_tokens=max_tokens, ignore_eos=True, http_timeout_s=http_timeout_s)
    probe = await probe_continuous_usage(url, model, endpoint)
    shape = replace(shape, continuous_usage=probe.continuous_usage)
    cpu0 = _cpu_s()
    outcome = await replay(url, model, conversations, shape, Arrivals(concurrency), lambda _: None, asyncio.Event())
    cpu = _cpu_s() - cpu0
    stats = phase_stats(outcome.records, outcome.wall_s, (50.0, 90.0, 99.0))
    d = stats.distributions
    return ClientBenchResult(
        url=url, endpoint=endpoint, concurrency=concurrency, requests=stats.requests, ok=stats.ok,
        failed=stats.failed, wall_s=outcome.wall_s, req_s=stats.req_s, output_tok_s=stats.output_tok_s,
        cpu_s=cpu, dispatch_lag_p99_ms=stats.dispatch_lag_p99_ms, ttft_ms=d["ttft_ms"], itl_ms=d["itl_ms"],
        itl_basis=stats.itl_basis, tpot_ms=d["tpot_ms"], e2el_ms=d["e2el_ms"], errors=stats.errors,
        input_len=sized,
    )  # fmt: skip
