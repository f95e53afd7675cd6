"""RequestRecord: one line of requests.jsonl, enough to recompute every aggregate."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from typing import Literal

Status = Literal["ok", "http_error", "server_error", "protocol_error", "connection_error", "timeout", "cancelled"]


@dataclass
class RequestRecord:
    """A request as sent and as answered. Times are integer nanoseconds (perf_counter_ns).

    `scheduled_ns` and `sent_ns` count from the phase start; `ttft_ns`, `chunk_ns` and `e2e_ns`
    count from the send. `chunk_ns` has the arrival of every chunk with non-empty `choices`.
    `chunk_tokens`, parallel to `chunk_ns`, has the completion tokens each of those chunks brought:
    the step of the cumulative `usage.completion_tokens` the server sends on every chunk when asked
    for `continuous_usage_stats` (a role-only chat delta without usage brings 0). It is None when
    any chunk did not say (a chunk-only server, usage only at the end), since a partial list
    cannot give per-token gaps. Files written before it existed load with None.
    `ended_ns` (from the phase start) is when the request ended, whatever its status; `during_pause` is
    True when dispatch was paused at some moment while it was in flight (its latency was measured
    while the load drained, not under the plan's load, so latency figures leave it out). Files
    written before these existed load with None and False.
    `conversation`/`turn` place a request in a multi-turn conversation; `output_text` is kept
    only where the workload needs it (live history, GSM8K scoring, coherence checks).
    """

    index: int
    endpoint: str
    prompt_source: str
    prompt_chars: int
    max_tokens: int
    scheduled_ns: int
    sent_ns: int = 0
    sent_at: float = 0.0
    ttft_ns: int | None = None
    e2e_ns: int | None = None
    chunk_ns: list[int] = field(default_factory=list)
    chunk_tokens: list[int] | None = None
    output_tokens: int | None = None
    output_tokens_source: Literal["usage", "chunks"] | None = None
    prompt_tokens: int | None = None
    output_chars: int = 0
    finish_reason: str | None = None
    status: Status = "ok"
    http_status: int | None = None
    error: str | None = None
    conversation: str | None = None
    turn: int = 0
    output_text: str | None = None
    ended_ns: int | None = None
    during_pause: bool = False

    def fail(self, status: Status, error: str) -> None:
        """Mark the request failed; the first failure reason is kept."""
        if self.status == "ok":
            self.status, self.error = status, error

    def as_dict(self) -> dict:
        """JSON form."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> RequestRecord:
        """Inverse of as_dict; unknown keys are ignored so older readers accept newer files."""
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in names})
