"""Prompt sources: built-ins, ShareGPT files (single and multi-turn), and the length filter before counting."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from runners.replay.prompts import (
    Conversation,
    DatasetError,
    Turn,
    builtin_conversations,
    cycle,
    load_sharegpt,
    within_chars,
)
from tests.support.project import SHARED


def test_length_filter_runs_before_counting() -> None:
    pool = builtin_conversations()
    long_one = Conversation("huge", (Turn("x" * 10_000),))
    chosen = cycle(within_chars([long_one, *pool[:2]], max_prompt_chars=500, origin="t"), count=5)
    assert [c.source for c in chosen] == ["builtin:0", "builtin:1", "builtin:0", "builtin:1", "builtin:0"]
    # a conversation's length counts every turn and recorded reply: the context it can build
    two_turns = Conversation("two", (Turn("a" * 300, "b" * 150), Turn("c" * 100)))
    assert two_turns.chars == 550
    assert cycle(within_chars([two_turns, pool[0]], 500, "t"), 2) == [pool[0], pool[0]]
    with pytest.raises(DatasetError, match="no prompt is at most 5 characters"):
        within_chars(pool, 5, "builtin")


def test_sharegpt_multi_turn_pairs_each_human_turn_with_the_reply_after_it(tmp_path: Path) -> None:
    f = tmp_path / "s.json"
    messages = [
        {"from": "gpt", "value": "greeting before any human turn is skipped"},
        {"from": "human", "value": "q1"}, {"from": "gpt", "value": "a1"},
        {"from": "human", "value": "q2"}, {"from": "gpt", "value": "a2"},
        {"from": "human", "value": "q3"},
    ]  # fmt: skip
    f.write_text(json.dumps([{"id": "c", "conversations": messages}]))
    (conv,) = load_sharegpt(f, max_turns=8)
    assert conv.source == "sharegpt:c"
    assert conv.turns == (Turn("q1", "a1"), Turn("q2", "a2"), Turn("q3", None))
    assert load_sharegpt(f)[0].turns == (Turn("q1", "a1"),)


def test_sharegpt_errors_name_file_and_entry(tmp_path: Path) -> None:
    f = tmp_path / "s.json"
    f.write_text(json.dumps([{"id": "a", "conversations": [{"from": "gpt", "value": "x"}]}, {"id": "b"}]))
    with pytest.raises(DatasetError, match=rf"{f}: entry 1 has no 'conversations'"):
        load_sharegpt(f)
    f.write_text("{")
    with pytest.raises(DatasetError, match="neither JSON nor JSONL"):
        load_sharegpt(f)


def test_sharegpt_jsonl_is_read_and_empty_binary_or_directory_inputs_say_what_they_are(tmp_path: Path) -> None:
    """A well-formed JSONL (one conversation per line) reads as the JSON list would; the rest is refused clearly."""
    entries = [{"id": f"c{i}", "conversations": [{"from": "human", "value": f"q{i}"}, {"from": "gpt", "value": "a"}]}
               for i in range(3)]  # fmt: skip
    as_json, as_jsonl = tmp_path / "s.json", tmp_path / "s.jsonl"
    as_json.write_text(json.dumps(entries))
    as_jsonl.write_text("\n".join(json.dumps(e) for e in entries) + "\n\n")
    assert load_sharegpt(as_jsonl) == load_sharegpt(as_json)
    as_jsonl.write_text(as_jsonl.read_text() + json.dumps({"id": "x"}) + "\n")
    with pytest.raises(DatasetError, match=rf"{as_jsonl}: line 5 has no 'conversations'"):
        load_sharegpt(as_jsonl)
    empty = tmp_path / "empty.json"
    empty.write_text("")
    with pytest.raises(DatasetError, match="the file is empty"):
        load_sharegpt(empty)
    binary = tmp_path / "model.bin"
    binary.write_bytes(bytes(range(256)) * 4)
    with pytest.raises(DatasetError, match="neither JSON nor JSONL"):
        load_sharegpt(binary)
    with pytest.raises(DatasetError, match="is a directory; name the dataset file in it"):
        load_sharegpt(tmp_path)


def test_real_sharegpt_slice_loads() -> None:
    path = SHARED / "data" / "sharegpt" / "sharegpt_v3_filtered_500.json"
    if not path.is_file():
        pytest.skip(f"{path} is absent (the shared data lives next to the project checkout)")
    conversations = load_sharegpt(path)
    assert 400 <= len(conversations) <= 500
    assert all(c.turns[0].user.strip() and c.source.startswith("sharegpt:") for c in conversations)


def test_a_sharegpt_file_is_parsed_once_until_it_changes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Each step reads the file again (ShareGPT's own is 642 MiB): the last one read is kept until it changes."""
    import orjson

    import runners.replay.prompts as prompts

    path = tmp_path / "sg.json"
    path.write_text(json.dumps([{"id": "a", "conversations": [{"from": "human", "value": "hi"}]}]))
    parses = []
    monkeypatch.setattr(prompts, "orjson", type("Counted", (), {
        "loads": staticmethod(lambda b: parses.append(1) or orjson.loads(b)), "JSONDecodeError": orjson.JSONDecodeError,
    }))  # fmt: skip
    first, second = load_sharegpt(path), load_sharegpt(path)
    assert first == second and first is not second and len(parses) == 1
    first.clear()  # a caller's list is its own
    assert [c.source for c in load_sharegpt(path)] == ["sharegpt:a"] and len(parses) == 1
    assert len(load_sharegpt(path, max_turns=2)) == 1 and len(parses) == 2  # other turns: parsed again
    path.write_text(json.dumps([{"id": "b", "conversations": [{"from": "human", "value": "hello"}]}]))
    assert [c.source for c in load_sharegpt(path)] == ["sharegpt:b"] and len(parses) == 3
