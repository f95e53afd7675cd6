"""A real memory hog: allocates and touches memory at a steady rate, bounded in size and time.

`python -m runners.testbed.memhog --rate-gib-s 1 --max-gib 4 --max-s 20` stands in for a serve
target whose memory runs away (a profiler buffer, a leak). It writes every page it allocates, so
MemAvailable really falls, prints one line per chunk, and exits by itself at either bound.
"""

from __future__ import annotations

import argparse
import sys
import time

from engine.units import GIB

CHUNK = 64 << 20  # 64 MiB per step


def hog(rate_gib_s: float, max_gib: float, max_s: float, hold_s: float) -> int:
    """Allocate at `rate_gib_s` until `max_gib` or `max_s`, then hold for `hold_s`; returns bytes held."""
    held: list[bytes] = []
    total = 0
    start = time.monotonic()
    interval = CHUNK / (rate_gib_s * GIB)
    while total + CHUNK <= max_gib * GIB and time.monotonic() - start < max_s:
        due = start + len(held) * interval
        delay = due - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        held.append(b"\x01" * CHUNK)  # written, so the pages are resident
        total += CHUNK
        print(f"{time.time():.3f} {total}", flush=True)
    end = time.monotonic() + hold_s
    while time.monotonic() < end:
        time.sleep(0.05)
    return total


def main(argv: list[str] | None = None) -> int:
    """Entry point."""
    p = argparse.ArgumentParser(prog="python -m runners.testbed.memhog", description=__doc__)
    p.add_argument("--rate-gib-s", type=float, required=True)
    p.add_argument("--max-gib", type=float, required=True)
    p.add_argument("--max-s", type=float, default=30.0)
    p.add_argument("--hold-s", type=float, default=0.0, help="keep the memory this long after the last chunk")
    args = p.parse_args(argv)
    if args.rate_gib_s <= 0 or args.max_gib <= 0:
        print("memhog: rate and size must be positive", file=sys.stderr)
        return 2
    hog(args.rate_gib_s, args.max_gib, args.max_s, args.hold_s)
    return 0


if __name__ == "__main__":
    sys.exit(main())
