"""File primitives and prompt sources."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from runners.files import JsonlTail, JsonlWriter, read_jsonl, tail_lines, write_atomic
from runners.replay.prompts import DatasetError, builtin_prompts, load_sharegpt, select_prompts
from tests.conftest import SHARED


def test_write_atomic_replaces_whole_and_leaves_no_temp(tmp_path: Path) -> None:
    target = tmp_path / "d" / "state.json"
    write_atomic(target, "one")
    write_atomic(target, "two")
    assert target.read_text() == "two"
    assert [p.name for p in target.parent.iterdir()] == ["state.json"]


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


def test_length_filter_runs_before_counting() -> None:
    pool = [p for p in builtin_prompts()]
    long_one = pool[0].__class__("x" * 10_000, "huge")
    chosen = select_prompts([long_one, *pool[:2]], count=5, max_prompt_chars=500, origin="t")
    assert len(chosen) == 5 and all(p.source != "huge" for p in chosen)
    with pytest.raises(DatasetError, match="no prompt is at most 5 characters"):
        select_prompts(pool, 1, 5, "builtin")


def test_sharegpt_errors_name_file_and_entry(tmp_path: Path) -> None:
    f = tmp_path / "s.json"
    f.write_text(json.dumps([{"id": "a", "conversations": [{"from": "gpt", "value": "x"}]}, {"id": "b"}]))
    with pytest.raises(DatasetError, match=rf"{f}: entry 1 has no 'conversations'"):
        load_sharegpt(f)
    f.write_text("{")
    with pytest.raises(DatasetError, match="not a readable JSON file"):
        load_sharegpt(f)


def test_real_sharegpt_slice_loads() -> None:
    path = SHARED / "data" / "sharegpt" / "sharegpt_v3_filtered_500.json"
    if not path.is_file():
        pytest.skip(f"{path} is absent (the shared data lives next to the project checkout)")
    prompts = load_sharegpt(path)
    assert 400 <= len(prompts) <= 500
    assert all(p.text.strip() and p.source.startswith("sharegpt:") for p in prompts)
