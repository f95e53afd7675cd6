"""Continuous batching on a thread of its own, so decoding never blocks the server's event loop.

Requests wait in a queue; up to `max_num_seqs` are decoded together, one token per step. Every
token is handed to the request's sink (called from the engine thread; the server's sink hops to
its event loop). Text is detokenized here so stop strings end generation at the right token.

Control commands (`call`) are callables the engine thread runs between steps, for work that must
happen on that thread (the torch profiler records only the thread that started it).
"""

from __future__ import annotations

import collections
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass, field

import torch

from engine.metrics import EngineMetrics, RequestTimes
from engine.model import KVCache, TinyDecoder
from engine.sampling import SamplingParams, make_generator, sample_token
from engine.tokenizer import EOS, StreamDecoder


@dataclass(frozen=True)
class TokenDelta:
    """What one engine step produced for one request."""

    text: str
    finish_reason: str | None
    prompt_tokens: int
    completion_tokens: int
    error: str | None = None


Sink = Callable[[TokenDelta], None]
StepHook = Callable[[], None]


class EngineStopped(RuntimeError):
    """The engine thread is not running, so it takes no requests."""


@dataclass(eq=False)
class _Sequence:
    request_id: str
    prompt_ids: list[int]
    params: SamplingParams
    sink: Sink
    arrival: float
    generator: torch.Generator
    cache: KVCache | None = None
    last_token: int = -1
    completion_tokens: int = 0
    decoder: StreamDecoder = field(default_factory=StreamDecoder)
    text: str = ""
    emitted: int = 0
    queued: float = 0.0  # when the engine was handed it (`arrival` may be earlier: the HTTP request's)
    scheduled: float | None = None  # when its prefill started
    first_token_time: float | None = None
    last_token_time: float | None = None


class EngineLoop:
    """Owns the model and the decode thread; `submit`, `abort`, `call` and the counters are thread-safe.

    `on_step`, when given, runs on the engine thread after every step: one loop iteration that ran the
    model (prefills of newly admitted requests and/or one decode of the running batch).
    """

    def __init__(
        self,
        model: TinyDecoder,
        max_num_seqs: int,
        metrics: EngineMetrics | None = None,
        on_step: StepHook | None = None,
    ) -> None:
        self.model = model
        self.max_num_seqs = max_num_seqs
        self.metrics = metrics
        self._on_step = on_step
        self._cond = threading.Condition()
        self._commands: collections.deque[tuple[Callable[[], object], Future]] = collections.deque()
        self._waiting: collections.deque[_Sequence] = collections.deque()
        self._aborted: set[str] = set()
        self._running: list[_Sequence] = []
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None
        self.fatal_error: str | None = None

    def start(self) -> None:
        """Start the decode thread."""
        self._thread = threading.Thread(target=self._run, name="engine-loop", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        """Ask the decode thread to finish and wait up to `timeout` seconds for it."""
        self._stopping.set()
        with self._cond:
            self._cond.notify_all()
        if self._thread is not None:
            self._thread.join(timeout)

    @property
    def alive(self) -> bool:
        """True while the decode thread runs."""
        return self._thread is not None and self._thread.is_alive()

    def num_running(self) -> int:
        """Sequences being decoded."""
        return len(self._running)

    def num_waiting(self) -> int:
        """Sequences queued for a decode slot."""
        return len(self._waiting)

    def submit(
        self, request_id: str, prompt_ids: list[int], params: SamplingParams, sink: Sink, arrival: float | None = None
    ) -> None:
        """Queue a request; its tokens go to `sink`. Raises EngineStopped when the thread is down.

        `arrival` (`time.perf_counter()`, default now) starts the request's TTFT and e2e clocks: the
        server passes when the HTTP request reached its handler, as vLLM stamps a request's arrival.
        """
        if not self.alive or self._stopping.is_set():
            raise EngineStopped(self.fatal_error or "the engine is stopping")
        queued = time.perf_counter()
        when = queued if arrival is None else arrival
        seq = _Sequence(request_id, prompt_ids, params, sink, when, make_generator(params.seed), queued=queued)
        with self._cond:
            self._waiting.append(seq)
            self._cond.notify()

    def abort(self, request_id: str) -> None:
        """Drop a request (the client went away); no more deltas are sent for it."""
        with self._cond:
            self._aborted.add(request_id)
            self._cond.notify()

    def call(self, command: Callable[[], object]) -> Future:
        """Run `command` on the engine thread between steps; its result or exception lands in the future.

        An idle engine thread is woken at once. A future cancelled before the command starts skips it.
        Raises EngineStopped when the thread is down; commands still queued when it stops fail with it.
        """
        future: Future = Future()
        with self._cond:
            if not self.alive or self._stopping.is_set():
                raise EngineStopped(self.fatal_error or "the engine is stopping")
            self._commands.append((command, future))
            self._cond.notify()
        return future

    def _run(self) -> None:
        try:
            while not self._stopping.is_set():
                self._run_commands()
                self._drop_aborted()
                prefilled = self._admit()
                if self.metrics:
                    self.metrics.on_queue(len(self._running), len(self._waiting))
                decoding = bool(self._running)
                if decoding:
                    self._step()
                if (prefilled or decoding) and self._on_step:
                    self._on_step()
                if not self._running:
                    with self._cond:
                        if not self._waiting and not self._commands and not self._stopping.is_set():
                            self._cond.wait(timeout=0.5)
        except Exception as exc:  # the thread must report, not vanish
            self.fatal_error = f"engine loop failed: {type(exc).__name__}: {exc}"
            self._fail_all(self.fatal_error)
            raise
        self._fail_all("the engine is shutting down")

    def _run_commands(self) -> None:
        while True:
            with self._cond:
                if not self._commands:
                    return
                command, future = self._commands.popleft()
            if not future.set_running_or_notify_cancel():
                continue
            try:
                result = command()
            except Exception as exc:  # the caller gets the failure; the engine goes on
                future.set_exception(exc)
            else:
                future.set_result(result)

    def _drop_aborted(self) -> None:
        with self._cond:
            if not self._aborted:
                return
            aborted, self._aborted = self._aborted, set()
            self._waiting = collections.deque(s for s in self._waiting if s.request_id not in aborted)
        self._running = [s for s in self._running if s.request_id not in aborted]

    def _admit(self) -> int:
        """Prefill waiting requests while decode slots are free; returns how many were prefilled."""
        prefilled = 0
        while len(self._running) < self.max_num_seqs:
            with self._cond:
                if not self._waiting:
                    return prefilled
                seq = self._waiting.popleft()
            prefilled += 1
            seq.scheduled = time.perf_counter()
            capacity = len(seq.prompt_ids) + seq.params.max_tokens
            seq.cache = self.model.new_cache(capacity)
            logits = self.model.prefill(seq.prompt_ids, seq.cache)
            if self.metrics:
                self.metrics.on_prefill(len(seq.prompt_ids))
            if self._emit(seq, sample_token(logits, seq.params, seq.generator)):
                self._running.append(seq)
        return prefilled

    def _step(self) -> None:
        batch = self._running
        logits = self.model.decode([s.last_token for s in batch], [s.cache for s in batch])
        self._running = [
            seq for i, seq in enumerate(batch) if self._emit(seq, sample_token(logits[i], seq.params, seq.generator))
        ]

    def _emit(self, seq: _Sequence, token: int) -> bool:
        """Account for `token`, send its delta; True while the sequence goes on."""
        now = time.perf_counter()
        seq.completion_tokens += 1
        seq.last_token = token
        if self.metrics:
            first = seq.last_token_time is None
            self.metrics.on_token(None if first else now - seq.last_token_time, now - seq.arrival if first else None)
        if seq.first_token_time is None:
            seq.first_token_time = now
        seq.last_token_time = now
        finish = None
        if token == EOS and not seq.params.ignore_eos:
            finish = "stop"
        else:
            seq.text += seq.decoder.push(token)
        stops = seq.params.stop
        cut = _earliest_stop(seq.text, stops, max(0, seq.emitted - max(map(len, stops)) + 1)) if stops else None
        if cut is not None:
            seq.text, finish = seq.text[:cut], "stop"
        if finish is None and (
            seq.completion_tokens >= seq.params.max_tokens or seq.cache.length + 1 > seq.cache.capacity
        ):
            finish = "length"
        if finish is not None and cut is None:
            seq.text += seq.decoder.flush()
        hold = 0 if finish or not stops else max(map(len, stops)) - 1
        upto = max(seq.emitted, len(seq.text) - hold)
        delta, seq.emitted = seq.text[seq.emitted : upto], upto
        ok = self._send(seq, TokenDelta(delta, finish, len(seq.prompt_ids), seq.completion_tokens))
        if finish is not None and self.metrics:
            times = RequestTimes(seq.arrival, seq.queued, seq.scheduled or seq.queued, seq.first_token_time, now)
            self.metrics.on_finish(finish, now, seq.completion_tokens, times)
        return ok and finish is None

    def _send(self, seq: _Sequence, delta: TokenDelta) -> bool:
        try:
            seq.sink(delta)
        except RuntimeError:  # the server's loop is closed: nobody is listening any more
            return False
        return True

    def _fail_all(self, reason: str) -> None:
        with self._cond:
            self._stopping.set()  # no more requests or commands: nobody would run them
            pending, self._waiting = list(self._waiting), collections.deque()
            commands, self._commands = list(self._commands), collections.deque()
        for _, future in commands:
            if future.set_running_or_notify_cancel():
                future.set_exception(EngineStopped(reason))
        for seq in [*self._running, *pending]:
            self._send(seq, TokenDelta("", "error", len(seq.prompt_ids), seq.completion_tokens, error=reason))
        self._running = []


def _earliest_stop(text: str, stops: tuple[str, ...], start: int) -> int | None:
    hits = [i for i in (text.find(s, start) for s in stops if s) if i >= 0]
    return min(hits) if hits else None
