"""Planted secrets never written: a real run of the embedded engine with planted values in arm env, `[serve] env`
and a `{ from_env = NAME }`, then every file of its run directory (recursively, as bytes), the headless output,
`validate`'s output and `watch --json`'s are searched for each value."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.plans import Plan, engine_serve, sharegpt_phase
from tests.support.processes import ROOT, run_headless

PLANTED = {
    "OPENAI_API_KEY": "sk-planted-openai-5f1c",
    "HUGGING_FACE_HUB_TOKEN": "hf_plantedhub7d2e",
    "NGC_KEY": "ngc-planted-9a3b",
    "WANDB_KEY": "wandb-planted-4c8d",
    "MISC_SETTING": "misc-planted-0e6f",  # no secret-looking name, same in both arms: hidden by default
}
FROM_ENV = ("GB10_TEST_PLANTED_HF", "hf_plantedfromenv3b1a")


def _plan(directory: Path) -> Path:
    serve = {"kind": "process", "ready_timeout_s": 60, **engine_serve(),
             "env": {"HF_TOKEN": {"from_env": FROM_ENV[0]}, "VLLM_LOGGING_LEVEL": "INFO"}}  # fmt: skip
    arms = [{"name": name, "env": {"CUTE_WO_SPLIT": split, **PLANTED}} for name, split in (("s1", "1"), ("s8", "8"))]
    phase = sharegpt_phase(requests=2, concurrency=2, max_tokens=4, ignore_eos=True, http_timeout_s=30)
    return Plan("planted", serve, arms, [phase]).write(directory)


def _found(data: bytes) -> list[str]:
    return [v for v in [*PLANTED.values(), FROM_ENV[1]] if v.encode() in data]


def _cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "console.cli", *args], capture_output=True, timeout=120, cwd=ROOT)


def test_no_planted_value_is_written_or_shown(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    plan = _plan(tmp_path / "plan")
    missing = _cli("validate", str(plan))  # the from_env variable is not set yet: refused, naming the field
    assert missing.returncode != 0 and b"serve.env.HF_TOKEN" in missing.stdout + missing.stderr
    assert b"Traceback" not in missing.stderr
    monkeypatch.setenv(*FROM_ENV)
    validate = _cli("validate", str(plan))
    assert validate.returncode == 0, validate.stderr
    assert b"CUTE_WO_SPLIT=8" in validate.stdout  # the key under test is shown
    assert _found(validate.stdout + validate.stderr) == []
    watch = _cli("watch", "--json", "--count", "1", "--interval", "0.1")
    assert _found(watch.stdout + watch.stderr) == []
    out = tmp_path / "run"
    result = run_headless(plan, out)
    assert result.returncode == 0, result.stdout + result.stderr
    assert _found((result.stdout + result.stderr).encode()) == []
    files = [p for p in out.rglob("*") if p.is_file()]
    assert any(p.name == "summary.md" for p in files) and (out / "plan.toml") in files
    assert not [p for p in files if p.name == "ENV"]  # the sentinel lives in the private runtime directory
    leaks = {p.relative_to(out).as_posix(): found for p in files if (found := _found(p.read_bytes()))}
    assert leaks == {}
