"""Errors that can be known before a target starts are `validate`'s: a phase named like a serve session's file, and
every data file opened and parsed as its step will read it (JSONL read, binary, empty and directories refused
clearly), with the count of usable prompts. `run` refuses the same plans before anything starts."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from engine.config_file import ConfigFileError
from runners.plan.load import load_plan
from runners.plan.steps import SERVE_DIR_ENTRIES
from runners.replay.data_check import check_phase_data
from tests.support.plans import Plan, engine_serve
from tests.support.project import ROOT

ARMS = [{"name": "a", "env": {"CUTE_WO_SPLIT": "1"}}]


def _cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "console.cli", *args], capture_output=True, text=True, timeout=120,
                          cwd=ROOT)  # fmt: skip


def _plan(directory: Path, *phases: dict) -> Path:
    return Plan("data-check", {"kind": "process", **engine_serve()}, ARMS, list(phases)).write(directory)


def _sharegpt(n: int) -> list[dict]:
    return [{"id": f"c{i}", "conversations": [{"from": "human", "value": "q" * (10 + 100 * i)},
                                              {"from": "gpt", "value": "a"}]} for i in range(n)]  # fmt: skip


def _gsm8k(n: int) -> str:
    rows = [{"question": f"What is {i} + 1?", "answer": f"{i} + 1 = {i + 1}\n#### {i + 1}"} for i in range(n)]
    return "\n".join(json.dumps(r) for r in rows) + "\n"


def test_a_phase_named_like_what_a_serve_session_keeps_is_refused_on_load(tmp_path: Path) -> None:
    """`serve.log` once passed validate, then the run started the target and died with NotADirectoryError."""
    for name in SERVE_DIR_ENTRIES:
        plan = _plan(tmp_path / name, {"name": name, "kind": "sharegpt", "requests": 1})
        with pytest.raises(ConfigFileError, match=r"phases\[0\]\.name: '.*'") as err:
            load_plan(plan)
        assert "name the phase otherwise" in str(err.value) or "must be 1-64 characters" in str(err.value)
    refused = _cli("validate", str(_plan(tmp_path, {"name": "serve.log", "kind": "sharegpt", "requests": 1})))
    assert refused.returncode == 2 and "keeps beside its steps (arms/<arm>/<mode>/serve.log)" in refused.stderr


def test_validate_reads_every_data_file_as_its_step_will_and_counts_the_usable_prompts(tmp_path: Path) -> None:
    (tmp_path / "chats.json").write_text(json.dumps(_sharegpt(5)))
    (tmp_path / "chats.jsonl").write_text("".join(json.dumps(e) + "\n" for e in _sharegpt(3)))
    (tmp_path / "test.jsonl").write_text(_gsm8k(12))
    (tmp_path / "train.jsonl").write_text(_gsm8k(8))
    entries = [{"timestamp": t * 10, "input_length": 8, "output_length": 4, "hash_ids": [t]} for t in range(6)]
    (tmp_path / "trace.jsonl").write_text("".join(json.dumps(e) + "\n" for e in entries))
    plan = _plan(
        tmp_path,
        {"name": "json", "kind": "sharegpt", "dataset": "chats.json", "requests": 2, "max_prompt_chars": 300},
        {"name": "jsonl", "kind": "sharegpt", "dataset": "chats.jsonl", "requests": 2},
        {"name": "math", "kind": "gsm8k", "test_file": "test.jsonl", "train_file": "train.jsonl", "questions": 4,
         "fewshot": 2},
        {"name": "replay", "kind": "trace", "trace": "trace.jsonl", "requests": 4},
    )  # fmt: skip
    checks = {c.phase: c for c in check_phase_data(load_plan(plan))}
    assert checks["json"].summary == "5 conversations, 3 within max_prompt_chars 300"
    assert checks["jsonl"].summary == "3 conversations, 3 within max_prompt_chars 8000"
    assert checks["math"].summary == (
        "12 test and 8 train problems; 12 2-shot prompts within max_prompt_chars 100000, 4 asked"
    )
    assert checks["replay"].summary == "6 trace entries, 4 replayed"
    done = _cli("validate", str(plan))
    assert done.returncode == 0, done.stderr
    assert "data phases[1] (jsonl): 3 conversations, 3 within max_prompt_chars 8000" in done.stdout


@pytest.mark.parametrize(
    ("content", "said"),
    [
        (b"", "the file is empty"),
        (bytes(range(256)) * 8, "neither JSON nor JSONL"),
        (b'{"not": "a list"}', "expected a JSON list of conversations"),
        (json.dumps(_sharegpt(2)).replace("human", "system").encode(), "no conversation has a human turn"),
    ],
)
def test_validate_and_run_refuse_a_dataset_no_step_could_read_before_anything_starts(
    tmp_path: Path, content: bytes, said: str
) -> None:
    (tmp_path / "data.json").write_bytes(content)
    plan = _plan(tmp_path, {"name": "chat", "kind": "sharegpt", "dataset": "data.json", "requests": 2})
    refused = _cli("validate", str(plan))
    assert refused.returncode == 2, refused.stdout
    assert f"{plan}: phases[0] (chat): {tmp_path / 'data.json'}: {said}" in refused.stderr
    assert ": valid" not in refused.stdout and "Traceback" not in refused.stderr
    out = tmp_path / "run"
    run = _cli("run", str(plan), "--headless", "--out", str(out))
    assert run.returncode == 2 and said in run.stderr and not out.exists()


def test_a_directory_named_as_a_dataset_is_called_a_directory(tmp_path: Path) -> None:
    (tmp_path / "data").mkdir()
    plan = _plan(tmp_path, {"name": "chat", "kind": "sharegpt", "dataset": "data", "requests": 2})
    with pytest.raises(ConfigFileError, match=r"phases\[0\]\.dataset: .*/data is a directory, not a file"):
        load_plan(plan)


def test_fewer_train_problems_than_shots_is_a_clear_error_for_validate_and_the_step(tmp_path: Path) -> None:
    """random.sample raised a bare ValueError inside the step; now the shared pool names the train file."""
    (tmp_path / "test.jsonl").write_text(_gsm8k(4))
    (tmp_path / "train.jsonl").write_text(_gsm8k(2))
    plan = _plan(tmp_path, {"name": "math", "kind": "gsm8k", "test_file": "test.jsonl", "train_file": "train.jsonl",
                            "fewshot": 5})  # fmt: skip
    [check] = check_phase_data(load_plan(plan))
    assert check.error == f"phases[0] (math): {tmp_path / 'train.jsonl'}: 2 train problems for 5-shot prompts"
