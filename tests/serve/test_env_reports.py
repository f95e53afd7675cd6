"""judge_reports: an arm is verified only by an EngineCore or worker report with every expected value."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from runners.serve.env_reports import ProcessReport, clear_reports, judge_reports, read_reports


def report(pid: int, roles: tuple[str, ...], keys: dict[str, str | None], error: str | None = None) -> ProcessReport:
    """A process report as the plugin writes it (secret-looking keys without their value)."""
    return ProcessReport(
        pid, roles, vllm_version="0.32.0", sentinel_error=error,
        keys={k: {"value": None if "TOKEN" in k else v, "sha256": v and hashlib.sha256(v.encode()).hexdigest(),
                  "source": "env"} for k, v in keys.items()},
    )  # fmt: skip


EXPECTED = {"CUTE_WO_SPLIT": "8", "HF_TOKEN": "t0k"}


def test_an_engine_core_with_every_value_verifies_and_is_named() -> None:
    proof = judge_reports(EXPECTED, [report(10, ("api_server",), EXPECTED), report(11, ("EngineCore",), EXPECTED)])
    assert proof.status == "verified" and proof.where == "EngineCore pid 11 (vLLM 0.32.0)"
    assert proof.reported == {"CUTE_WO_SPLIT": "8", "HF_TOKEN": "***redacted***"}


def test_a_worker_alone_verifies() -> None:
    assert judge_reports(EXPECTED, [report(12, ("worker",), EXPECTED)]).where == "worker pid 12 (vLLM 0.32.0)"


def test_another_value_anywhere_is_a_mismatch_named_in_the_kernel_process_first() -> None:
    wrong = {**EXPECTED, "CUTE_WO_SPLIT": "1"}
    proof = judge_reports(EXPECTED, [report(10, ("api_server",), wrong), report(11, ("EngineCore",), wrong)])
    assert proof.status == "mismatch" and proof.where.startswith("EngineCore pid 11")
    assert proof.mismatches == ("CUTE_WO_SPLIT: want '8', the process runs '1'",)
    secret = judge_reports(EXPECTED, [report(11, ("EngineCore",), {**EXPECTED, "HF_TOKEN": "other"})])
    [said] = secret.mismatches  # never spelled out: told apart by a sha256 prefix
    assert said.startswith("HF_TOKEN: want '***redacted*** sha256:") and "other" not in said
    absent = judge_reports(EXPECTED, [report(11, ("EngineCore",), {**EXPECTED, "CUTE_WO_SPLIT": None})])
    assert absent.status == "mismatch" and "the process has none" in absent.reason


def test_only_an_api_server_or_nothing_leaves_the_env_unverified() -> None:
    only_api = judge_reports(EXPECTED, [report(10, ("api_server",), EXPECTED)])
    assert only_api.status == "unverified" and "no EngineCore or worker process reported" in only_api.reason
    nothing = judge_reports(EXPECTED, [])
    assert nothing.status == "unverified" and "pip install ./vllm_plugin" in nothing.reason
    unreadable = judge_reports(EXPECTED, [report(11, ("EngineCore",), {}, error="/gb10/env/ENV: line 3: bad")])
    assert unreadable.status == "unverified" and "could not read the arm's ENV" in unreadable.reason


def test_reports_are_read_and_cleared_and_garbage_is_named(tmp_path: Path) -> None:
    folder = tmp_path / "reports"
    folder.mkdir()
    (folder / "11.json").write_text(json.dumps({"pid": 11, "roles": ["EngineCore"], "keys": {}}))
    (folder / "12.json").write_text("{torn")
    (folder / "13.json").write_text(json.dumps({"roles": []}))
    reports, problems = read_reports(tmp_path)
    assert [r.pid for r in reports] == [11]
    assert len(problems) == 2 and "12.json: cannot be read" in problems[0] and "no pid" in problems[1]
    clear_reports(tmp_path)
    assert read_reports(tmp_path) == ([], [])
