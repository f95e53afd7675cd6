"""Prometheus metrics with vLLM's names, for what this engine has.

The request latency histograms mean what vLLM 0.32's mean (vllm/v1/metrics/stats.py): a request
arrives when the HTTP request reaches its handler (before its body is parsed), it is queued when the
engine thread is handed it, scheduled when its prefill starts, and
- `time_to_first_token_seconds`: arrival -> first token; `e2e_request_latency_seconds`: arrival -> finish;
- `inter_token_latency_seconds`: one sample per engine output of a request after its first (this engine
  emits one token per step, so per token);
- `request_queue_time_seconds`: queued -> scheduled; `request_prefill_time_seconds`: scheduled -> first
  token; `request_decode_time_seconds`: first -> last token;
- `request_time_per_output_token_seconds`: decode time / (tokens - 1) per finished request, 0 for a
  one-token request (as vLLM observes it).
The per-request intervals are observed when the request finishes (an aborted request adds none).
"""

from __future__ import annotations

from dataclasses import dataclass

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

_LATENCY_BUCKETS = (0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 10.0)
_E2E_BUCKETS = (0.1, 0.3, 0.5, 0.8, 1.0, 1.5, 2.0, 2.5, 5.0, 10.0, 15.0, 20.0, 30.0, 40.0, 60.0, 120.0)
_TOKEN_BUCKETS = (1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000, 10000)


@dataclass(frozen=True)
class RequestTimes:
    """A finished request's timestamps, in seconds on one monotonic clock (`time.perf_counter`)."""

    arrival: float
    queued: float
    scheduled: float
    first_token: float
    last_token: float

    @property
    def queue_s(self) -> float:
        """Queued -> scheduled."""
        return self.scheduled - self.queued

    @property
    def prefill_s(self) -> float:
        """Scheduled -> first token."""
        return self.first_token - self.scheduled

    @property
    def decode_s(self) -> float:
        """First token -> last token."""
        return self.last_token - self.first_token

    def time_per_output_token_s(self, generated: int) -> float:
        """Decode time / (generated - 1); 0 when there is no token after the first (vLLM's rule)."""
        return self.decode_s / (generated - 1) if generated > 1 else 0.0


class EngineMetrics:
    """One registry per engine; `render()` gives the `/metrics` body."""

    def __init__(self, model_name: str) -> None:
        self._model = model_name
        self.registry = CollectorRegistry(auto_describe=True)
        labels = ["model_name"]
        r = self.registry
        self.running = Gauge("vllm:num_requests_running", "Requests being decoded.", labels, registry=r)
        self.waiting = Gauge("vllm:num_requests_waiting", "Requests queued for a decode slot.", labels, registry=r)
        self.prompt_tokens = Counter("vllm:prompt_tokens", "Prefill tokens processed.", labels, registry=r)
        self.generation_tokens = Counter("vllm:generation_tokens", "Tokens generated.", labels, registry=r)
        self.success = Counter(
            "vllm:request_success", "Finished requests by reason.", [*labels, "finished_reason"], registry=r
        )

        def histogram(name: str, doc: str, buckets: tuple[float, ...]) -> Histogram:
            return Histogram(name, doc, labels, buckets=buckets, registry=r)

        self.ttft = histogram("vllm:time_to_first_token_seconds", "Arrival to first token.", _LATENCY_BUCKETS)
        self.itl = histogram("vllm:inter_token_latency_seconds", "Gap between consecutive tokens.", _LATENCY_BUCKETS)
        self.e2e = histogram("vllm:e2e_request_latency_seconds", "Arrival to last token.", _E2E_BUCKETS)
        self.queue_time = histogram("vllm:request_queue_time_seconds", "Queued to scheduled.", _E2E_BUCKETS)
        self.prefill_time = histogram("vllm:request_prefill_time_seconds", "Scheduled to first token.", _E2E_BUCKETS)
        self.decode_time = histogram("vllm:request_decode_time_seconds", "First to last token.", _E2E_BUCKETS)
        self.time_per_output_token = histogram(
            "vllm:request_time_per_output_token_seconds",
            "Decode time / (generated tokens - 1), per finished request.",
            _LATENCY_BUCKETS,
        )
        self.request_prompt_tokens = histogram(
            "vllm:request_prompt_tokens", "Prompt tokens per request.", _TOKEN_BUCKETS
        )
        self.request_generation_tokens = histogram(
            "vllm:request_generation_tokens", "Generated tokens per request.", _TOKEN_BUCKETS
        )

    def on_queue(self, running: int, waiting: int) -> None:
        """Publish how many requests are being decoded and how many wait."""
        self.running.labels(self._model).set(running)
        self.waiting.labels(self._model).set(waiting)

    def on_prefill(self, prompt_tokens: int) -> None:
        """Count a finished prefill."""
        self.prompt_tokens.labels(self._model).inc(prompt_tokens)
        self.request_prompt_tokens.labels(self._model).observe(prompt_tokens)

    def on_token(self, seconds_since_previous: float | None, ttft: float | None) -> None:
        """Count one generated token: the first carries its TTFT, later ones their inter-token gap."""
        self.generation_tokens.labels(self._model).inc()
        if ttft is not None:
            self.ttft.labels(self._model).observe(ttft)
        if seconds_since_previous is not None:
            self.itl.labels(self._model).observe(seconds_since_previous)

    def on_finish(self, reason: str, finished: float, generated: int, times: RequestTimes) -> None:
        """Count a finished request (`finished`: when it finished, on the clock of `times`)."""
        model = self._model
        self.success.labels(model, reason).inc()
        self.e2e.labels(model).observe(finished - times.arrival)
        self.request_generation_tokens.labels(model).observe(generated)
        self.queue_time.labels(model).observe(times.queue_s)
        self.prefill_time.labels(model).observe(times.prefill_s)
        self.decode_time.labels(model).observe(times.decode_s)
        self.time_per_output_token.labels(model).observe(times.time_per_output_token_s(generated))

    def render(self) -> bytes:
        """The Prometheus text exposition of every metric."""
        return generate_latest(self.registry)
