"""A measurement's scratch directory: one given (kept), or a temporary one removed afterwards."""

from __future__ import annotations

import contextlib
import tempfile
from collections.abc import Iterator
from pathlib import Path

WORKDIR_PREFIX = "gb10-console-bench-"


@contextlib.contextmanager
def workdir(given: Path | None) -> Iterator[Path]:
    """`given` as is (kept), or a temporary directory named WORKDIR_PREFIX... removed afterwards."""
    if given is not None:
        given.mkdir(parents=True, exist_ok=True)
        yield given
        return
    with tempfile.TemporaryDirectory(prefix=WORKDIR_PREFIX) as tmp:
        yield Path(tmp)
