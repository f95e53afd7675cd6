"""Run a coroutine on uvloop (a faster event loop: the replay client's chunk path is CPU-bound)."""

from __future__ import annotations

from collections.abc import Coroutine
from typing import Any, TypeVar

import uvloop

T = TypeVar("T")


def run(main: Coroutine[Any, Any, T]) -> T:
    """`asyncio.run(main)` on a uvloop event loop."""
    return uvloop.run(main)
