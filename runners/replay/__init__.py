"""Replay: an SSE client that measures what vLLM's `bench serve` measures, and the workloads it sends."""
