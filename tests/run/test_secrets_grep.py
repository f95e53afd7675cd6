"""Planted secrets never written: a real run of the embedded engine with planted values in arm env, `[serve] env`
and a `{ from_env = NAME }`, then every file of its run directory (recursively, as bytes), the headless output,
`validate`'s output and `watch --json`'s are searched for each value."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.processes import ROOT, run_headless
from tests.support.secrets import FROM_ENV, planted_in, planted_plan


def _cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "console.cli", *args], capture_output=True, timeout=120, cwd=ROOT)


def test_no_planted_value_is_written_or_shown(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    plan = planted_plan(tmp_path / "plan")
    missing = _cli("validate", str(plan))  # the from_env variable is not set yet: refused, naming the field
    assert missing.returncode != 0 and b"serve.env.HF_TOKEN" in missing.stdout + missing.stderr
    assert b"Traceback" not in missing.stderr
    monkeypatch.setenv(*FROM_ENV)
    validate = _cli("validate", str(plan))
    assert validate.returncode == 0, validate.stderr
    assert b"CUTE_WO_SPLIT=8" in validate.stdout  # the key under test is shown
    assert planted_in(validate.stdout + validate.stderr) == []
    watch = _cli("watch", "--json", "--count", "1", "--interval", "0.1")
    assert planted_in(watch.stdout + watch.stderr) == []
    out = tmp_path / "run"
    result = run_headless(plan, out)
    assert result.returncode == 0, result.stdout + result.stderr
    assert planted_in((result.stdout + result.stderr).encode()) == []
    files = [p for p in out.rglob("*") if p.is_file()]
    assert any(p.name == "summary.md" for p in files) and (out / "plan.toml") in files
    assert not [p for p in files if p.name == "ENV"]  # the sentinel lives in the private runtime directory
    leaks = {p.relative_to(out).as_posix(): found for p in files if (found := planted_in(p.read_bytes()))}
    assert leaks == {}
