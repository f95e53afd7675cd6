"""Driving a serve target's profiler (`POST /start_profile`, `POST /stop_profile`) under hard deadlines.

vLLM and the embedded engine expose the same two endpoints. Two `stop_profile` calls that never
came back hard-rebooted a Spark, so here every call has a deadline that covers the whole answer
(a server that trickles bytes is as hung as one that says nothing), and the soak decides what a
missed deadline means: the target is killed and the trace recorded as lost.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import asdict, dataclass

import httpx
import orjson

from engine.deadlines import timeout

START_DEADLINE_S = 15.0


class ProfilerError(Exception):
    """A profiler call that failed or missed its deadline; the message says which and why."""


CAPTURED = "captured"
LOST = "lost"
RECOVERED = "recovered after kill"


@dataclass(frozen=True)
class ProfileRecord:
    """What became of one step's profile, for phase.json and events.

    "captured" only with a trace file in the step; "lost" only when none appeared; "recovered after
    kill" when the stop failed (the target was killed) yet a trace had been written.
    """

    status: str  # CAPTURED | LOST | RECOVERED
    reason: str = ""
    trace: str | None = None  # the first trace file in the step's profile/ (absolute path)
    stop_s: float | None = None
    files: tuple[str, ...] = ()  # every file collected into profile/, relative to it
    collect_s: float | None = None  # how long the runner waited for the files to stop changing
    kernels: dict | None = None  # the step's kernel table (runners/soak/trace_files.kernel_table)

    def as_dict(self) -> dict:
        """JSON form."""
        out = asdict(self)
        out["files"] = list(self.files)
        return out

    def event_fields(self) -> dict:
        """What the profile events carry (the kernel table stays in phase.json)."""
        return {"status": self.status, "reason": self.reason, "trace": self.trace, "stop_s": self.stop_s,
                "files": list(self.files)}  # fmt: skip


async def _post(base_url: str, path: str, body: dict | None, deadline_s: float) -> dict:
    """POST under one deadline for connect, headers and the whole body; the JSON answer."""
    try:
        async with timeout(deadline_s), httpx.AsyncClient(timeout=httpx.Timeout(deadline_s)) as client:
            resp = await client.post(f"{base_url}{path}", json=body)
            content = resp.content
    except (asyncio.TimeoutError, httpx.TimeoutException):
        raise ProfilerError(f"{path} did not answer within {deadline_s:g} s") from None
    except httpx.HTTPError as exc:
        raise ProfilerError(f"{path} failed: {type(exc).__name__}: {exc}") from None
    if resp.status_code != 200:
        raise ProfilerError(f"{path} answered {resp.status_code}: {content[:200].decode(errors='replace')}")
    try:
        data = orjson.loads(content) if content.strip() else {}
    except orjson.JSONDecodeError:
        data = {"raw": content[:200].decode(errors="replace")}
    return data if isinstance(data, dict) else {"raw": data}


async def start_profile(base_url: str, trace_dir: str | None, deadline_s: float = START_DEADLINE_S) -> dict:
    """Start the target's profiler (the engine writes into `trace_dir`; vLLM into its torch_profiler_dir)."""
    return await _post(base_url, "/start_profile", {"dir": trace_dir} if trace_dir else None, deadline_s)


async def stop_profile(base_url: str, deadline_s: float) -> tuple[dict, float]:
    """Stop it under a hard deadline; (the answer, seconds it took). ProfilerError on anything else."""
    t0 = time.monotonic()
    answer = await _post(base_url, "/stop_profile", None, deadline_s)
    return answer, time.monotonic() - t0
