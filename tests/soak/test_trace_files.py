"""A stop's trace files moved into the step take the run's file mode, whatever umask the target wrote them under."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from runners.run.files import UMASK_VAR
from runners.soak.trace_files import collect, snapshot


async def test_a_trace_written_world_readable_is_moved_in_with_the_runs_mode(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(UMASK_VAR, raising=False)
    source, dest = tmp_path / "profile", tmp_path / "step" / "profile"
    source.mkdir()
    before = snapshot(source)
    trace = source / "rank0.pt.trace.json.gz"
    trace.write_bytes(b"x" * 64)
    os.chmod(trace, 0o644)  # as a container's umask 022 leaves it
    collected = await collect(source, before, dest, deadline_s=5, settle_s=0.2)
    assert collected.files == ("rank0.pt.trace.json.gz",)
    assert stat.S_IMODE((dest / "rank0.pt.trace.json.gz").stat().st_mode) == 0o640
    monkeypatch.setenv(UMASK_VAR, "022")  # a user who shares runs with others
    before = snapshot(source)
    other = source / "rank1.pt.trace.json.gz"
    other.write_bytes(b"y")
    os.chmod(other, 0o600)
    await collect(source, before, dest, deadline_s=5, settle_s=0.2)
    assert stat.S_IMODE((dest / "rank1.pt.trace.json.gz").stat().st_mode) == 0o644
