"""File primitives: atomic replace, JSONL append and a tail that returns only whole lines."""

from __future__ import annotations

from pathlib import Path

import pytest

from runners.run.files import JsonlTail, JsonlWriter, read_jsonl, run_umask, tail_lines, write_atomic


def test_write_atomic_replaces_whole_and_leaves_no_temp(tmp_path: Path) -> None:
    target = tmp_path / "d" / "state.json"
    write_atomic(target, "one")
    write_atomic(target, "two")
    assert target.read_text() == "two"
    assert [p.name for p in target.parent.iterdir()] == ["state.json"]


@pytest.mark.foreign_events  # plain JSON lines: the file primitives know nothing of event types
def test_tail_returns_only_complete_lines(tmp_path: Path) -> None:
    path = tmp_path / "events.jsonl"
    tail = JsonlTail(path)
    assert tail.read_new() == []
    with open(path, "ab") as fh:
        fh.write(b'{"a": 1}\n{"b": ')
    assert tail.read_new() == [{"a": 1}]
    with open(path, "ab") as fh:
        fh.write(b'2}\nnot json\n{"c": 3}\n')
    assert tail.read_new() == [{"b": 2}, {"c": 3}]
    assert tail.bad_lines == 1


def test_writer_and_reader_agree(tmp_path: Path) -> None:
    w = JsonlWriter(tmp_path / "r.jsonl")
    for i in range(3):
        w.append({"i": i}, sync=i == 2)
    w.close()
    assert read_jsonl(tmp_path / "r.jsonl") == [{"i": 0}, {"i": 1}, {"i": 2}]
    (tmp_path / "log").write_text("\n".join(str(i) for i in range(100)))
    assert tail_lines(tmp_path / "log", 3) == ["97", "98", "99"]


def test_the_run_umask_is_027_unless_gb10_umask_says_otherwise(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("GB10_UMASK", raising=False)
    assert run_umask() == (0o027, None)
    monkeypatch.setenv("GB10_UMASK", "022")
    assert run_umask() == (0o022, None)
    monkeypatch.setenv("GB10_UMASK", "9x")
    assert run_umask() == (0o027, "GB10_UMASK='9x' is not an octal umask (e.g. 022); using 027")
