"""The server's own view of a replay phase: its Prometheus `/metrics`, scraped every few seconds.

Kept, under vLLM's names (without the `vllm:` prefix):
- `kv_cache_usage_perc`: `vllm:kv_cache_usage_perc` (vLLM v1), else the older `vllm:gpu_cache_usage_perc`;
  a fraction in [0, 1] despite the name; the max over label sets (one per engine).
- `num_requests_running`, `num_requests_waiting`: gauges, summed over label sets.
- `num_preemptions`, `prompt_tokens`, `generation_tokens`: counters (`vllm:<name>_total` samples), summed
  over label sets;
- `prefix_cache_queries`, `prefix_cache_hits`: prefix-cache counters in tokens; their increases give the
  step's hit rate (`prefix_cache_hit_rate`);
- `spec_decode_num_accepted_tokens`, `spec_decode_num_draft_tokens`, `spec_decode_num_drafts`: speculative
  decoding counters, whose increases give the acceptance rate (accepted / drafted tokens) the mechanism
  gate asks for and the mean acceptance length (1 + accepted tokens / drafts).

A metric the server does not export is None (absent), never 0. Counter increases follow Prometheus
`increase()`: a value lower than the previous one is a reset, and the increase is then the new value.
Gauges (KV usage, running, waiting) of a step with fewer than MIN_GAUGE_SAMPLES ok scrapes are "not
sampled": the first scrape is taken before the step's first request and the last after its end, so
fewer would show idle values the step never had.

Scrapes are cheap: histogram bucket lines (most of vLLM's body) are dropped before parsing.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, fields

import httpx
from prometheus_client.parser import text_string_to_metric_families

from engine.deadlines import timeout

DEFAULT_INTERVAL_S = 0.5
DEFAULT_SCRAPE_DEADLINE_S = 1.5
ERROR_BODY_CHARS = 200
MIN_GAUGE_SAMPLES = 3
COUNTERS = (
    "num_preemptions",
    "prompt_tokens",
    "generation_tokens",
    "prefix_cache_queries",
    "prefix_cache_hits",
    "spec_decode_num_accepted_tokens",
    "spec_decode_num_draft_tokens",
    "spec_decode_num_drafts",
)
GAUGES = ("kv_cache_usage_perc", "num_requests_running", "num_requests_waiting")

# Field -> accepted sample names in order of preference. Counters are matched on the sample name, which is
# `<name>_total` whether prometheus_client's parser named the family `<name>` (typed counter, `_total`
# stripped) or `<name>_total` (untyped exposition).
_SAMPLE_NAMES: dict[str, tuple[str, ...]] = {
    "kv_cache_usage_perc": ("vllm:kv_cache_usage_perc", "vllm:gpu_cache_usage_perc"),
    "num_requests_running": ("vllm:num_requests_running",),
    "num_requests_waiting": ("vllm:num_requests_waiting",),
    "num_preemptions": ("vllm:num_preemptions_total",),
    "prompt_tokens": ("vllm:prompt_tokens_total",),
    "generation_tokens": ("vllm:generation_tokens_total",),
    "prefix_cache_queries": ("vllm:prefix_cache_queries_total",),
    "prefix_cache_hits": ("vllm:prefix_cache_hits_total",),
    "spec_decode_num_accepted_tokens": ("vllm:spec_decode_num_accepted_tokens_total",),
    "spec_decode_num_draft_tokens": ("vllm:spec_decode_num_draft_tokens_total",),
    "spec_decode_num_drafts": ("vllm:spec_decode_num_drafts_total",),
}
_MAX_OVER_LABELS = frozenset({"kv_cache_usage_perc"})
_WANTED = frozenset(name for names in _SAMPLE_NAMES.values() for name in names)


class MetricsParseError(ValueError):
    """The body is not Prometheus text exposition; the message says why and how the body starts."""


class MetricsScrapeError(Exception):
    """One scrape failed (HTTP error, timeout, unparseable body); names the URL and the reason."""

    def __init__(self, url: str, reason: str) -> None:
        super().__init__(f"scraping {url} failed: {reason}")
        self.url = url
        self.reason = reason


@dataclass(frozen=True)
class MetricValues:
    """One scrape, reduced to what a phase keeps; None where the server does not export the metric."""

    kv_cache_usage_perc: float | None = None
    num_requests_running: float | None = None
    num_requests_waiting: float | None = None
    num_preemptions: float | None = None
    prompt_tokens: float | None = None
    generation_tokens: float | None = None
    prefix_cache_queries: float | None = None
    prefix_cache_hits: float | None = None
    spec_decode_num_accepted_tokens: float | None = None
    spec_decode_num_draft_tokens: float | None = None
    spec_decode_num_drafts: float | None = None

    def as_dict(self) -> dict[str, float | None]:
        """JSON form: every field, None for absent."""
        return asdict(self)


METRICS = tuple(f.name for f in fields(MetricValues))


def parse_metrics(text: str) -> MetricValues:
    """Reduce a Prometheus text body to MetricValues.

    Rules: KV usage takes the max over label sets, from `vllm:kv_cache_usage_perc` when any such sample
    exists, else from `vllm:gpu_cache_usage_perc`; the other metrics are summed over label sets. NaN and
    infinite samples are ignored. A metric with no sample is None. Raises MetricsParseError when the text
    is not Prometheus exposition (an empty body is valid and yields all None). Histogram bucket lines are
    dropped unparsed (none is kept, and they are most of the body).
    """
    found: dict[str, list[float]] = {}
    kept = "\n".join(line for line in text.split("\n") if not _is_bucket(line))
    try:
        for family in text_string_to_metric_families(kept):
            for sample in family.samples:
                value = float(sample.value)
                if sample.name in _WANTED and math.isfinite(value):
                    found.setdefault(sample.name, []).append(value)
    except (ValueError, IndexError, TypeError) as exc:
        reason = str(exc) or f"malformed line ({type(exc).__name__})"
        raise MetricsParseError(f"not Prometheus text exposition: {reason}; body starts {text[:80]!r}") from exc
    return MetricValues(**{name: _reduce(name, found) for name in METRICS})


def _is_bucket(line: str) -> bool:
    """True for a histogram bucket sample line (`<name>_bucket{...} value`)."""
    brace = line.find("{")
    name = line[:brace] if brace >= 0 else line.partition(" ")[0]
    return name.endswith("_bucket")


def _reduce(name: str, found: dict[str, list[float]]) -> float | None:
    """The first accepted sample name that has samples, combined by max (KV usage) or sum."""
    for sample_name in _SAMPLE_NAMES[name]:
        values = found.get(sample_name)
        if values:
            return max(values) if name in _MAX_OVER_LABELS else math.fsum(values)
    return None


@dataclass(frozen=True)
class CounterStep:
    """What one scrape added: per counter the increase since the last value seen (None when there is nothing
    to compare, as CounterTracker defines), and the counters that reset."""

    increases: dict[str, float | None]
    resets: tuple[str, ...]


class CounterTracker:
    """Counter increases over a phase, fed consecutive MetricValues; no I/O.

    Per counter, with v the new value and p the last value seen: v absent -> increase None (p is kept for
    the next scrape); v >= p -> v - p; v < p -> reset, increase v. Without p: if an earlier scrape lacked
    the counter, it appeared since and counts from 0 (increase v; prometheus_client exports a labelled
    counter only after its first increment), else v is the baseline (increase None).
    `totals` is the sum of the increases: None for a counter never seen, 0.0 from its first sighting.
    """

    def __init__(self) -> None:
        self._last: dict[str, float] = {}
        self._missing_before: set[str] = set()
        self._totals: dict[str, float] = {}
        self.reset_count = 0

    def update(self, values: MetricValues) -> CounterStep:
        """Account for one scrape's counters; returns their increases and resets."""
        increases: dict[str, float | None] = {}
        resets: list[str] = []
        for name in COUNTERS:
            value = getattr(values, name)
            previous = self._last.get(name)
            increase: float | None = None
            if value is None:
                if previous is None:
                    self._missing_before.add(name)
            elif previous is None:
                increase = value if name in self._missing_before else None
            elif value < previous:
                resets.append(name)
                increase = value
            else:
                increase = value - previous
            if value is not None:
                self._last[name] = value
                self._totals[name] = self._totals.get(name, 0.0) + (increase or 0.0)
            increases[name] = increase
        self.reset_count += len(resets)
        return CounterStep(increases, tuple(resets))

    @property
    def totals(self) -> dict[str, float | None]:
        """Increase of each counter over everything fed so far (None for a counter never seen)."""
        return {name: self._totals.get(name) for name in COUNTERS}


async def fetch_metrics_text(client: httpx.AsyncClient, url: str, deadline_s: float) -> str:
    """GET `url` (the full `/metrics` URL) within `deadline_s` seconds; the body as text.

    Raises MetricsScrapeError for a timeout, a transport error or a status other than 200; asyncio
    cancellation propagates.
    """
    try:
        async with timeout(deadline_s):
            resp = await client.get(url)
    except asyncio.TimeoutError:  # TimeoutError on 3.11+; async_timeout raises asyncio's on 3.10
        raise MetricsScrapeError(url, f"no complete response within {deadline_s:g} s") from None
    except httpx.HTTPError as exc:
        raise MetricsScrapeError(url, f"{type(exc).__name__}: {exc}".rstrip(": ")) from exc
    if resp.status_code != 200:
        body = resp.text.strip()[:ERROR_BODY_CHARS] or "(empty body)"
        raise MetricsScrapeError(url, f"HTTP {resp.status_code}: {body}")
    return resp.text


async def scrape_metrics(client: httpx.AsyncClient, url: str, deadline_s: float) -> MetricValues:
    """GET `url` (the full `/metrics` URL) and parse it, all within `deadline_s` seconds.

    Raises MetricsScrapeError for a timeout, a transport error, a status other than 200 or an unparseable
    body; asyncio cancellation propagates.
    """
    text = await fetch_metrics_text(client, url, deadline_s)
    try:
        return parse_metrics(text)
    except MetricsParseError as exc:
        raise MetricsScrapeError(url, str(exc)) from exc


class MetricsSampler:
    """Scrapes `url` every `interval_s` during a phase and hands each sample to `on_sample`.

    A sample (one JSON line) is {"t": wall time at the scrape's start, "elapsed_s": seconds since `run`
    started, "values": MetricValues.as_dict() (all None when the scrape failed), "increases": {counter:
    increase or None (CounterTracker)}, "resets": [counters that reset], "error": MetricsScrapeError text or None}.
    The server never makes it raise: a failed scrape is a sample with `error` set. Errors from `on_sample`
    propagate. Without a `client` it creates one (timeout `deadline_s`) and closes it when `run` ends.
    """

    def __init__(
        self,
        url: str,
        on_sample: Callable[[dict], None],
        client: httpx.AsyncClient | None = None,
        interval_s: float = DEFAULT_INTERVAL_S,
        deadline_s: float = DEFAULT_SCRAPE_DEADLINE_S,
    ) -> None:
        if interval_s <= 0 or deadline_s <= 0:
            raise ValueError(f"interval_s and deadline_s must be > 0, got {interval_s:g} and {deadline_s:g}")
        self.url = url
        self.interval_s = interval_s
        self.deadline_s = deadline_s
        self._on_sample = on_sample
        self._client = client

    async def run(self, stop: asyncio.Event) -> None:
        """Scrape at once, then every `interval_s`, until `stop` is set.

        Stopping: a scrape in flight when `stop` is set is finished (at most `deadline_s`) and is the last;
        if `stop` is set between scrapes, one final scrape is taken so the phase's counters cover its end.
        So `run` returns within `deadline_s` (plus scheduling) of `stop.set()`.
        """
        if self._client is not None:
            await self._loop(self._client, stop)
            return
        async with httpx.AsyncClient(timeout=httpx.Timeout(self.deadline_s)) as client:
            await self._loop(client, stop)

    async def _loop(self, client: httpx.AsyncClient, stop: asyncio.Event) -> None:
        tracker = CounterTracker()
        start = time.monotonic()
        next_at = start
        while True:
            self._on_sample(await self._sample(client, tracker, start))
            if stop.is_set():
                return
            next_at += self.interval_s
            now = time.monotonic()
            if next_at < now:  # a slow scrape: skip the missed ticks rather than scrape back to back
                next_at = now
            await _wait_for_event(stop, next_at - now)

    async def _sample(self, client: httpx.AsyncClient, tracker: CounterTracker, start: float) -> dict:
        t, elapsed = time.time(), time.monotonic() - start
        try:
            values = await scrape_metrics(client, self.url, self.deadline_s)
        except MetricsScrapeError as exc:
            return {
                "t": t,
                "elapsed_s": elapsed,
                "values": MetricValues().as_dict(),
                "increases": dict.fromkeys(COUNTERS),
                "resets": [],
                "error": str(exc),
            }
        step = tracker.update(values)
        return {
            "t": t,
            "elapsed_s": elapsed,
            "values": values.as_dict(),
            "increases": step.increases,
            "resets": list(step.resets),
            "error": None,
        }


async def _wait_for_event(event: asyncio.Event, seconds: float) -> None:
    """Return when `event` is set or after `seconds`, whichever comes first."""
    try:
        async with timeout(seconds):
            await event.wait()
    except asyncio.TimeoutError:
        pass


def hit_rate(hits: float | None, queries: float | None) -> float | None:
    """Prefix-cache hit rate = hits / queries (token counter increases); None when queries did not increase."""
    if hits is None or not queries:
        return None
    return hits / queries


def acceptance_rate(accepted_tokens: float | None, draft_tokens: float | None) -> float | None:
    """Speculative decoding acceptance rate = accepted tokens / draft tokens; None when no token was drafted."""
    if accepted_tokens is None or not draft_tokens:
        return None
    return accepted_tokens / draft_tokens


def mean_acceptance_length(accepted_tokens: float | None, drafts: float | None) -> float | None:
    """Mean acceptance length = 1 + accepted tokens / drafts (vLLM's: the tokens one verify step yields,
    its own token included); None when there was no draft."""
    if accepted_tokens is None or not drafts:
        return None
    return 1.0 + accepted_tokens / drafts


def summarize(samples: list[dict]) -> dict:
    """The phase's server-side summary (for `phase.json`), recomputed from MetricsSampler samples alone.

    Only ok samples (`error` None) count for values, in order. `kv_cache_usage_perc_max`/`_mean`: max and
    arithmetic mean over samples where present; `num_requests_running_max`, `num_requests_waiting_max`:
    max where present; with fewer than MIN_GAUGE_SAMPLES ok samples these gauges are None and
    `not_sampled` maps each to the reason (else it is empty). `<counter>_increase`: CounterTracker totals
    over the ok samples' values (resets handled as Prometheus `increase()` does); `counter_resets`: reset
    events over all counters; `prefix_cache_hit_rate`, `spec_decode_acceptance_rate`,
    `spec_decode_mean_acceptance_length`: hit_rate, acceptance_rate and mean_acceptance_length of those
    increases. A metric absent in every ok sample is listed in `absent_metrics` (so with no ok sample
    every metric is listed) and its numbers are None. `last_error`: the last failed scrape's error, or None.
    """
    ok = [s for s in samples if s.get("error") is None]
    failed = [s for s in samples if s.get("error") is not None]
    series = {name: [s["values"][name] for s in ok if s["values"].get(name) is not None] for name in METRICS}
    tracker = CounterTracker()
    for s in ok:
        tracker.update(MetricValues(**{name: s["values"].get(name) for name in METRICS}))
    not_sampled = {}
    if len(ok) < MIN_GAUGE_SAMPLES:
        reason = (
            f"not sampled: {len(ok)} ok /metrics scrape(s) in the step, at least {MIN_GAUGE_SAMPLES} needed "
            "(the first and last fall outside the load); lower metrics_interval_s"
        )
        not_sampled = {name: reason for name in GAUGES if series[name]}
        series.update({name: [] for name in not_sampled})
    kv = series["kv_cache_usage_perc"]
    summary: dict = {
        "scrapes_ok": len(ok),
        "scrapes_failed": len(failed),
        "kv_cache_usage_perc_max": max(kv, default=None),
        "kv_cache_usage_perc_mean": math.fsum(kv) / len(kv) if kv else None,
        "num_requests_running_max": max(series["num_requests_running"], default=None),
        "num_requests_waiting_max": max(series["num_requests_waiting"], default=None),
        "not_sampled": not_sampled,
    }
    totals = tracker.totals
    summary.update({f"{name}_increase": total for name, total in totals.items()})
    summary["prefix_cache_hit_rate"] = hit_rate(totals["prefix_cache_hits"], totals["prefix_cache_queries"])
    summary["spec_decode_acceptance_rate"] = acceptance_rate(
        totals["spec_decode_num_accepted_tokens"], totals["spec_decode_num_draft_tokens"]
    )
    summary["spec_decode_mean_acceptance_length"] = mean_acceptance_length(
        totals["spec_decode_num_accepted_tokens"], totals["spec_decode_num_drafts"]
    )
    summary["counter_resets"] = tracker.reset_count
    summary["absent_metrics"] = [name for name in METRICS if not series[name] and name not in not_sampled]
    summary["last_error"] = failed[-1]["error"] if failed else None
    return summary
