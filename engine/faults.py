"""Fault switches for rehearsing incidents: `python -m engine.server ... --test-fault NAME[=ARG]`.

Nothing here is active unless the server is started with an explicit `--test-fault` flag. Parsing
(`parse_faults`) is a pure function; the misbehaviour itself lives here too, so the server only
decides where each fault applies.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from dataclasses import dataclass
from typing import Any, TypeVar

import torch

from engine.kernels.wo_nvfp4 import WoWeight, bf16_rounded
from engine.kernels.wo_split import gather_slots, wo_split_partials
from engine.units import GIB

T = TypeVar("T")

BALLOON_CHUNK_BYTES = 64 << 20
TRICKLE_BODY_BYTES = 600
DEFAULT_TRICKLE_S = 1.0
DEFAULT_STALL_TOKENS = 3
DEFAULT_BURST_MS = 250.0
DISCONNECT_POLL_S = 0.5

# name -> (argument syntax, what it does); the order is the order of --help.
FAULTS: dict[str, tuple[str, str]] = {
    "stop_profile_hang": ("", "POST /stop_profile never answers (until the client goes away)"),
    "stop_profile_trickle": (
        "[=SECONDS]",
        f"POST /stop_profile stops the profile, answers 200, then sends its {TRICKLE_BODY_BYTES}-byte body one "
        f"byte every SECONDS (default {DEFAULT_TRICKLE_S:g})",
    ),
    "stream_stall": (
        "[=N]",
        f"every streaming completion sends N tokens (default {DEFAULT_STALL_TOKENS}), then nothing, "
        "without closing, until the client goes away",
    ),
    "stream_burst": (
        "[=MS]",
        f"every streaming completion's SSE bytes are held back and released together every MS milliseconds "
        f"(default {DEFAULT_BURST_MS:g}) from the stream's start: the client sees bursts, the server's own "
        "latency histograms stay true",
    ),
    "zombie": (
        "[=N]",
        "GET endpoints answer; every POST hangs until the client goes away, once N completion POSTs "
        "(/v1/completions, /v1/chat/completions) have been let through (default 0: from the start; N > 0 turns "
        "an engine that passed its readiness check into a zombie mid-run)",
    ),
    "wo_drop_last_slot": (
        "",
        "the W_O split-K kernel leaves out its last slot's partial sum (a gather bug): the start-up kernel "
        "checks fail and the model computes wrong outputs",
    ),
    "balloon_after_stop": (
        "=RATE_GIB_S:MAX_GIB",
        "after POST /stop_profile answers, a thread allocates and touches memory at RATE GiB/s up to MAX GiB "
        "and holds it until the process exits",
    ),
}


class FaultSpecError(ValueError):
    """A `--test-fault` value that names no fault or carries a bad argument."""


@dataclass(frozen=True)
class BalloonSpec:
    """`balloon_after_stop=RATE_GIB_S:MAX_GIB`."""

    rate_gib_s: float
    max_gib: float


@dataclass(frozen=True)
class ActiveFaults:
    """The faults a server was started with; the default is none."""

    stop_profile_hang: bool = False
    stop_profile_trickle_s: float | None = None
    stream_stall_tokens: int | None = None
    stream_burst_ms: float | None = None
    zombie: bool = False
    zombie_after: int = 0  # completion POSTs let through before the zombie starts hanging every POST
    wo_drop_last_slot: bool = False
    balloon_after_stop: BalloonSpec | None = None

    def names(self) -> list[str]:
        """The active faults as `NAME[=ARG]` in a canonical form, e.g. `["stream_stall=3", "zombie"]`."""
        out = []
        if self.stop_profile_hang:
            out.append("stop_profile_hang")
        if self.stop_profile_trickle_s is not None:
            out.append(f"stop_profile_trickle={self.stop_profile_trickle_s:g}")
        if self.stream_stall_tokens is not None:
            out.append(f"stream_stall={self.stream_stall_tokens}")
        if self.stream_burst_ms is not None:
            out.append(f"stream_burst={self.stream_burst_ms:g}")
        if self.zombie:
            out.append(f"zombie={self.zombie_after}" if self.zombie_after else "zombie")
        if self.wo_drop_last_slot:
            out.append("wo_drop_last_slot")
        if self.balloon_after_stop is not None:
            b = self.balloon_after_stop
            out.append(f"balloon_after_stop={b.rate_gib_s:g}:{b.max_gib:g}")
        return out


def fault_help() -> str:
    """The `--help` section that lists every fault."""
    lines = ["test faults (--test-fault NAME[=ARG], repeatable; only for rehearsing incidents):"]
    lines += [f"  {name}{syntax}\n      {text}" for name, (syntax, text) in FAULTS.items()]
    return "\n".join(lines)


def parse_faults(specs: Iterable[str]) -> ActiveFaults:
    """`--test-fault` values -> ActiveFaults; raises FaultSpecError naming the bad value and the choices."""
    values: dict[str, Any] = {}
    seen: set[str] = set()
    for spec in specs:
        name, has_arg, arg = spec.partition("=")
        name = name.strip()
        if name not in FAULTS:
            raise FaultSpecError(f"--test-fault {spec!r}: unknown fault {name!r} (known: {', '.join(FAULTS)})")
        if name in seen:
            raise FaultSpecError(f"--test-fault {name} is given twice")
        seen.add(name)
        syntax = FAULTS[name][0]
        if has_arg and not syntax:
            raise FaultSpecError(f"--test-fault {spec!r}: {name} takes no argument")
        if name == "stop_profile_hang":
            values["stop_profile_hang"] = True
        elif name == "zombie":
            values["zombie"] = True
            values["zombie_after"] = _number(spec, arg, int) if has_arg else 0
        elif name == "wo_drop_last_slot":
            values["wo_drop_last_slot"] = True
        elif name == "stop_profile_trickle":
            values["stop_profile_trickle_s"] = _number(spec, arg, float) if has_arg else DEFAULT_TRICKLE_S
        elif name == "stream_stall":
            values["stream_stall_tokens"] = _number(spec, arg, int) if has_arg else DEFAULT_STALL_TOKENS
        elif name == "stream_burst":
            values["stream_burst_ms"] = _number(spec, arg, float) if has_arg else DEFAULT_BURST_MS
        else:
            rate, colon, most = arg.partition(":")
            if not colon:
                raise FaultSpecError(f"--test-fault {spec!r}: write it as balloon_after_stop=RATE_GIB_S:MAX_GIB")
            values["balloon_after_stop"] = BalloonSpec(_number(spec, rate, float), _number(spec, most, float))
    return ActiveFaults(**values)


def _number(spec: str, text: str, kind: type[int] | type[float]) -> Any:
    """An integer of 0 or more, or a finite number above 0."""
    try:
        value = kind(text)
    except ValueError:
        raise FaultSpecError(
            f"--test-fault {spec!r}: {text!r} is not {'an integer' if kind is int else 'a number'}"
        ) from None
    if kind is int and value < 0:
        raise FaultSpecError(f"--test-fault {spec!r}: {text!r} must be 0 or more")
    if kind is float and not 0 < value < float("inf"):
        raise FaultSpecError(f"--test-fault {spec!r}: {text!r} must be a finite number above 0")
    return value


def wo_gemv_dropping_last_slot(x: torch.Tensor, w: WoWeight, num_kv_heads: int, wo_split: int) -> torch.Tensor:
    """`wo_drop_last_slot`: the torch W_O path with the last slot's partial left out of the gather."""
    partials = wo_split_partials(bf16_rounded(x), w.dense, num_kv_heads, wo_split)
    return gather_slots(partials[:-1]) if partials.shape[0] > 1 else torch.zeros_like(partials[0])


async def hang_until_disconnect(receive: Callable[[], Awaitable[dict]]) -> None:
    """Never answer: read ASGI messages until `http.disconnect` (or until the task is cancelled)."""
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return


async def _stall(is_disconnected: Callable[[], Awaitable[bool]] | None) -> None:
    never = asyncio.Event()
    while True:
        try:
            await asyncio.wait_for(never.wait(), DISCONNECT_POLL_S)
        except asyncio.TimeoutError:
            if is_disconnected is not None and await is_disconnected():
                return


async def stall_after(
    items: AsyncIterator[T], count: int, is_disconnected: Callable[[], Awaitable[bool]] | None = None
) -> AsyncIterator[T]:
    """Pass on the first `count` items (or all, if fewer come), then send nothing and never end.

    The source is closed at the stall, so the engine stops generating for it; the stall ends only
    when the client goes away (`is_disconnected`) or the task is cancelled.
    """
    try:
        for _ in range(count):
            try:
                item = await anext(items)
            except StopAsyncIteration:
                break
            yield item
    finally:
        aclose = getattr(items, "aclose", None)
        if aclose is not None:
            await aclose()
    await _stall(is_disconnected)


async def release_in_bursts(items: AsyncIterator[bytes], interval_s: float) -> AsyncIterator[bytes]:
    """`stream_burst`: read `items` as they come, but pass them on only every `interval_s`, all held ones at once.

    Releases are at interval_s, 2·interval_s, ... after the first read; the last burst follows the end
    of `items`. Closing or cancelling this generator stops the reader and closes `items` (so the engine
    drops the request); an error of `items` is raised after the bytes read before it.
    """
    held: list[bytes] = []
    ended = asyncio.Event()

    async def read() -> None:
        try:
            async for item in items:
                held.append(item)
        finally:
            ended.set()

    reader = asyncio.create_task(read())
    try:
        while True:
            await asyncio.sleep(interval_s)
            finished = ended.is_set()  # read before the burst, so nothing read after it is left behind
            if held:
                burst = b"".join(held)
                held.clear()
                yield burst
            if finished:
                break
        reader.result()
    finally:
        reader.cancel()
        await asyncio.gather(reader, return_exceptions=True)  # its error, if any, was raised above
        aclose = getattr(items, "aclose", None)
        if aclose is not None:
            await aclose()


async def trickle(body: bytes, interval_s: float, size: int = TRICKLE_BODY_BYTES) -> AsyncIterator[bytes]:
    """`body` left-padded with spaces to `size` bytes (still valid JSON), one byte every `interval_s`."""
    padded = body.rjust(size)
    for i in range(len(padded)):
        if i:
            await asyncio.sleep(interval_s)
        yield padded[i : i + 1]


class MemoryBalloon:
    """A runaway buffer: a daemon thread allocates and touches memory at a rate up to a cap, held to exit."""

    def __init__(self, spec: BalloonSpec, chunk_bytes: int = BALLOON_CHUNK_BYTES) -> None:
        self.spec = spec
        self.chunk_bytes = chunk_bytes
        self._chunks: list[bytearray] = []
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None

    @property
    def held_bytes(self) -> int:
        """Bytes allocated so far."""
        return sum(map(len, list(self._chunks)))

    def start(self) -> bool:
        """Start inflating (once per process); False when it already has."""
        with self._lock:
            if self._thread is not None:
                return False
            self._thread = threading.Thread(target=self._inflate, name="test-fault-balloon", daemon=True)
        self._thread.start()
        return True

    def _inflate(self) -> None:
        limit = int(self.spec.max_gib * GIB)
        rate = self.spec.rate_gib_s * GIB
        began, held = time.monotonic(), 0
        while held < limit:
            size = min(self.chunk_bytes, limit - held)
            self._chunks.append(bytearray(b"\xa5") * size)  # written, so every page is resident
            held += size
            time.sleep(max(0.0, began + held / rate - time.monotonic()))


def balloon_for(faults: ActiveFaults) -> MemoryBalloon | None:
    """The balloon a server with `faults` inflates after /stop_profile, if any."""
    return MemoryBalloon(faults.balloon_after_stop) if faults.balloon_after_stop else None
