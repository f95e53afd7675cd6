"""Readiness and effective-settings checks shared by every serve runtime.

Ready means `/health` answers 200 **and** a 1-token completion succeeds: a zombie engine can
answer GETs while POSTs hang.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass

import httpx

from engine.deadlines import timeout
from runners.run.redact import NO_PLAN, EnvPolicy
from runners.serve.runtime import ProbeResult, ReadyInfo, ServeError

POLL_INTERVAL_S = 0.25
PROBE_TIMEOUT_S = 2.0


async def wait_ready(base_url: str, deadline_s: float, exited: Callable[[], str | None], log_hint: str) -> ReadyInfo:
    """Poll until ready or `deadline_s` passes; `exited()` returns a reason once the target is gone.

    Raises ServeError naming the URL, what was last seen, and `log_hint` (where to look next).
    """
    start = time.perf_counter()
    last = "no answer yet"
    async with httpx.AsyncClient(base_url=base_url, timeout=PROBE_TIMEOUT_S) as client:
        try:
            async with timeout(deadline_s):
                while True:
                    gone = exited()
                    if gone:
                        raise ServeError(f"serve target {gone} before it was ready; {log_hint}")
                    try:
                        health = await client.get("/health")
                        if health.status_code == 200:
                            model = await model_id(client)
                            t0 = time.perf_counter()
                            await _one_token(client, model, max(1.0, deadline_s - (t0 - start)))
                            return ReadyInfo(model, time.perf_counter() - start, time.perf_counter() - t0)
                        last = f"/health answered {health.status_code}"
                    except httpx.HTTPError as exc:
                        last = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
                    except ServeError as exc:
                        last = str(exc)
                    await asyncio.sleep(POLL_INTERVAL_S)
        except asyncio.TimeoutError:
            raise ServeError(
                f"serve target at {base_url} not ready after {deadline_s:.0f} s (last: {last}); {log_hint}"
            ) from None


async def wait_ready_explained(
    base_url: str,
    deadline_s: float,
    exited: Callable[[], str | None],
    log_hint: str,
    log_tail: Callable[[], list[str]],
) -> ReadyInfo:
    """wait_ready, with the last lines of the target's log added to the error."""
    try:
        return await wait_ready(base_url, deadline_s, exited, log_hint)
    except ServeError as exc:
        tail = "\n    ".join(log_tail())
        raise ServeError(f"{exc}\n  last lines of serve.log:\n    {tail}") from None


async def probe(base_url: str) -> ProbeResult:
    """One GET /health under PROBE_TIMEOUT_S."""
    healthy, latency, detail = await probe_health(base_url)
    return ProbeResult(healthy, latency, detail)


async def model_id(client: httpx.AsyncClient) -> str:
    """The first model `GET /v1/models` lists (client has the server's base_url); ServeError otherwise."""
    resp = await client.get("/v1/models")
    if resp.status_code != 200:
        raise ServeError(f"/v1/models answered {resp.status_code}")
    try:
        return str(resp.json()["data"][0]["id"])
    except (ValueError, KeyError, IndexError, TypeError):
        raise ServeError("/v1/models answered without a model id") from None


async def _one_token(client: httpx.AsyncClient, model: str, deadline_s: float) -> None:
    body = {"model": model, "prompt": "ready?", "max_tokens": 1, "temperature": 0}
    resp = await client.post("/v1/completions", json=body, timeout=deadline_s)
    if resp.status_code != 200:
        raise ServeError(f"1-token completion answered {resp.status_code}: {resp.text[:200]}")


async def probe_health(base_url: str) -> tuple[bool, float | None, str]:
    """One GET /health under PROBE_TIMEOUT_S: (healthy, latency seconds, detail)."""
    t0 = time.perf_counter()
    try:
        async with httpx.AsyncClient(timeout=PROBE_TIMEOUT_S) as client:
            resp = await client.get(f"{base_url}/health")
    except httpx.HTTPError as exc:
        return False, None, f"{type(exc).__name__}: {exc}"
    return resp.status_code == 200, time.perf_counter() - t0, f"/health answered {resp.status_code}"


@dataclass(frozen=True)
class TargetReport:
    """What a target says about itself in /debug/config: its effective env and its kernel checks (None: absent)."""

    env: dict[str, str] | None
    kernel_checks: list[dict] | None = None


async def fetch_target_report(base_url: str) -> TargetReport:
    """The env and kernel checks the target reports in /debug/config; both None when it reports nothing."""
    try:
        async with httpx.AsyncClient(timeout=PROBE_TIMEOUT_S) as client:
            resp = await client.get(f"{base_url}/debug/config")
    except httpx.HTTPError:
        return TargetReport(None)
    if resp.status_code != 200:
        return TargetReport(None)
    try:
        body = resp.json()
    except ValueError:
        return TargetReport(None)
    if not isinstance(body, dict):
        return TargetReport(None)
    env, checks = body.get("env"), body.get("kernel_checks")
    return TargetReport(
        {str(k): str(v) for k, v in env.items()} if isinstance(env, dict) else None,
        [c for c in checks if isinstance(c, dict)] if isinstance(checks, list) else None,
    )


def env_mismatches(expected: dict[str, str], reported: dict[str, str], policy: EnvPolicy = NO_PLAN) -> list[str]:
    """Keys the target reports with a value other than the arm asked for, as `KEY: want X, target runs Y`, each
    value as `policy` shows it (a hidden one as `***redacted*** sha256:…`, which still tells the two apart)."""
    out = []
    for key, want in expected.items():
        if key in reported and reported[key] != want:
            out.append(f"{key}: want {policy.value(key, want)!r}, target runs {policy.value(key, reported[key])!r}")
    return out
