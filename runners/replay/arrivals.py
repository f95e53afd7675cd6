"""Send-time schedules for open-loop replay: seconds from phase start at which each request is sent."""

from __future__ import annotations

import math
import random
from itertools import accumulate


def _check(n: int, rate: float) -> None:
    """Refuse a negative count or a rate that is not a positive finite number of requests per second."""
    if n < 0:
        raise ValueError(f"request count must be >= 0, got {n}")
    if not (math.isfinite(rate) and rate > 0):
        raise ValueError(f"request rate must be a positive finite number of requests/s, got {rate}")


def constant_offsets(n: int, rate: float) -> list[float]:
    """Evenly spaced sends: request i at i / rate seconds."""
    _check(n, rate)
    return [i / rate for i in range(n)]


def gamma_offsets(n: int, rate: float, burstiness: float, seed: int) -> list[float]:
    """vLLM `bench serve` arrivals: request 0 at 0 s, then gaps ~ Gamma(shape=burstiness, scale=1/(rate*burstiness)).

    The mean gap is 1/rate whatever the burstiness; the gaps' coefficient of variation is 1/sqrt(burstiness),
    so 1.0 is a Poisson process, < 1 is burstier and > 1 more uniform. Gaps come from
    `random.Random(seed).gammavariate`, so a seed always gives the same schedule.
    """
    _check(n, rate)
    if not (math.isfinite(burstiness) and burstiness > 0):
        raise ValueError(f"burstiness must be a positive finite number (1.0 = Poisson), got {burstiness}")
    if n == 0:
        return []
    rng = random.Random(seed)
    scale = 1.0 / (rate * burstiness)
    return list(accumulate((rng.gammavariate(burstiness, scale) for _ in range(n - 1)), initial=0.0))


def poisson_offsets(n: int, rate: float, seed: int) -> list[float]:
    """Poisson arrivals: gamma_offsets with burstiness 1 (exponential gaps with mean 1/rate)."""
    return gamma_offsets(n, rate, 1.0, seed)
