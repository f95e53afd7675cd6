"""Dropping the page cache (runners/host/page_cache.py): a sync, then 1 written to the control file; why not when it
cannot."""

from __future__ import annotations

from pathlib import Path

from runners.host.page_cache import drop_page_cache


def test_dropping_the_page_cache_writes_1_after_a_sync_and_says_why_when_it_cannot(tmp_path: Path) -> None:
    control = tmp_path / "drop_caches"
    done = drop_page_cache(control, euid=0)
    assert done.dropped and control.read_text() == "1\n" and done.free_before_gib is not None
    assert drop_page_cache(control, euid=1000).reason == "not root: only root may drop the page cache"
    refused = drop_page_cache(tmp_path, euid=0)  # a directory: the write fails
    assert not refused.dropped and refused.reason.startswith(f"cannot write {tmp_path}: ")
