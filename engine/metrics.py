"""Prometheus metrics with vLLM's names, for what this engine has."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

_LATENCY_BUCKETS = (0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 10.0)
_E2E_BUCKETS = (0.1, 0.3, 0.5, 0.8, 1.0, 1.5, 2.0, 2.5, 5.0, 10.0, 15.0, 20.0, 30.0, 40.0, 60.0, 120.0)
_TOKEN_BUCKETS = (1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000, 10000)


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
        self.ttft = Histogram(
            "vllm:time_to_first_token_seconds",
            "Arrival to first token.",
            labels,
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.itl = Histogram(
            "vllm:inter_token_latency_seconds",
            "Gap between consecutive tokens.",
            labels,
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.e2e = Histogram(
            "vllm:e2e_request_latency_seconds",
            "Arrival to last token.",
            labels,
            buckets=_E2E_BUCKETS,
            registry=r,
        )
        self.request_prompt_tokens = Histogram(
            "vllm:request_prompt_tokens", "Prompt tokens per request.", labels, buckets=_TOKEN_BUCKETS, registry=r
        )
        self.request_generation_tokens = Histogram(
            "vllm:request_generation_tokens",
            "Generated tokens per request.",
            labels,
            buckets=_TOKEN_BUCKETS,
            registry=r,
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

    def on_finish(self, reason: str, e2e_seconds: float, generated: int) -> None:
        """Count a finished request."""
        self.success.labels(self._model, reason).inc()
        self.e2e.labels(self._model).observe(e2e_seconds)
        self.request_generation_tokens.labels(self._model).observe(generated)

    def render(self) -> bytes:
        """The Prometheus text exposition of every metric."""
        return generate_latest(self.registry)
