"""summary.json's one model: what the report writes reads back the same, the JSON keeps its field names, and a
damaged or older file reads as damaged, saying what is wrong, never raising."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest

from runners.gates.plan_diff import PlanDifference
from runners.gates.result import GateResult
from runners.plan.steps import StepKey
from runners.replay.measurement_check import MeasurementCheck
from runners.replay.metrics import phase_stats
from runners.replay.pauses import PauseAccount
from runners.report.summary_model import (
    ArmSummary,
    DamagedSummary,
    DoneStep,
    PendingStep,
    RegistrySource,
    Summary,
    read_summary,
    write_summary,
)

STEP = StepKey("split1", "primary", "replay", 0)
# the fields scripts read: summary.json keeps every one of them, under these names
TOP_FIELDS = [
    "run_id", "plan", "status", "baseline", "deciding_phases", "arms", "steps", "gates", "verdicts",
    "reproduction_rows", "prior_run", "plan_differences", "limitations", "plots", "registries",
]  # fmt: skip
ARM_FIELDS = [
    "arm", "arm_env", "env_status", "env_where", "steps_done", "steps_total", "stats", "paused_s",
    "paused_excluded_s", "verdict", "gsm8k_correct", "gsm8k_questions",
]  # fmt: skip
DONE_FIELDS = [
    "step", "kind", "done", "results", "stats", "pause", "server_latency", "measurement", "profile", "region_timings",
]  # fmt: skip


def _summary() -> Summary:
    stats = replace(phase_stats([], 2.5), ok=6, ttft_p50_ms=20.0)
    arm = ArmSummary(arm="split1", arm_env="CUTE_WO_SPLIT=1", env_status="verified", env_where="EngineCore pid 7",
                     steps_done=1, steps_total=2, stats=stats, paused_s=1.5, paused_excluded_s=1.0, verdict="baseline",
                     gsm8k_correct=None, gsm8k_questions=None)  # fmt: skip
    done = DoneStep(step=STEP, kind="sharegpt", done=True, results="goodput 1.00 req/s", stats={"ok": 6},
                    pause=PauseAccount(((1.0, 2.5),), 1.5, 1.0, 0.5, 2), server_latency=None,
                    measurement=MeasurementCheck("unchecked", reason="no /metrics"), profile=None,
                    region_timings={"status": "missing", "reason": "none"})  # fmt: skip
    pending = PendingStep(step=replace(STEP, rep=1), kind="sharegpt", done=False, results="", stats=None)
    return Summary(
        run_id="r1", plan="mini", status="finished", baseline="split1",
        deciding_phases={"gsm8k": None, "wall": "replay", "tpot": "replay", "long_decode": None},
        arms=(arm,), steps=(done, pending), gates=(GateResult("quality", "no_data", ("no score",), arm="split1"),),
        verdicts={"split1": "baseline"}, prior_run="r0",
        plan_differences=(PlanDifference("phase replay: max_tokens", "16", "8"),),
        limitations=("1 of 2 steps are not done",),
        plots=("plots/wall.png",), registries=RegistrySource(directory="configs/registries", errors=()),
    )  # fmt: skip


def test_what_the_report_writes_reads_back_the_same_with_its_field_names(tmp_path: Path) -> None:
    path = tmp_path / "summary.json"
    summary = _summary()
    write_summary(path, summary)
    assert read_summary(path) == summary
    data = json.loads(path.read_text())
    assert list(data) == TOP_FIELDS and list(data["arms"][0]) == ARM_FIELDS
    assert list(data["steps"][0]) == DONE_FIELDS and list(data["steps"][1]) == ["step", "kind", "done", "results",
                                                                                 "stats"]  # fmt: skip
    assert data["steps"][0]["step"] == {"arm": "split1", "mode": "primary", "phase": "replay", "rep": 0}
    assert data["steps"][0]["pause"]["intervals"] == [[1.0, 2.5]] and data["arms"][0]["stats"]["ok"] == 6
    assert data["gates"][0]["failed_criteria"] == ["no score"] and data["registries"]["errors"] == []
    assert data["plan_differences"] == [{"what": "phase replay: max_tokens", "a": "16", "b": "8"}]


def test_a_summary_without_later_fields_reads_with_none_of_them(tmp_path: Path) -> None:
    """Fields a summary lacks read as none of them: one written before `registries` existed still reads."""
    path = tmp_path / "summary.json"
    data = json.loads(_summary().model_dump_json())
    del data["registries"], data["reproduction_rows"]
    path.write_text(json.dumps(data))
    summary = read_summary(path)
    assert isinstance(summary, Summary) and summary.registries is None and summary.reproduction_rows == ()
    assert summary.arms == _summary().arms


@pytest.mark.parametrize(
    ("text", "said"),
    [
        ('{"run_id": "r1", "status": "fini', "not readable as JSON"),
        ("[1, 2]", "the top level: Input should be a valid dictionary"),
        ('{"run_id": "r1", "status": "finished"}', "plan: Field required"),
        ('{"run_id": "r1", "plan": "p", "status": "finished", "gates": ["not a gate"]}', "gates.0:"),
        ('{"run_id": "r1", "plan": "p", "status": "finished", "steps": [{"step": "damaged", "done": true}]}',
         "steps.0.done.step: Input should be a dictionary or an instance of StepKey"),
        ('{"run_id": "r1", "plan": "p", "status": "finished", "arms": [{"arm": "a"}]}', "arms.0.arm_env: Field "
         "required (and 10 more)"),
    ],
)  # fmt: skip
def test_a_damaged_or_older_summary_reads_as_damaged_and_says_what_and_what_to_do(
    tmp_path: Path, text: str, said: str
) -> None:
    path = tmp_path / "summary.json"
    path.write_text(text)
    summary = read_summary(path)
    assert isinstance(summary, DamagedSummary) and summary.path == path
    assert said in summary.reason, summary.reason
    assert str(path) in summary.reason and f"gb10-console report {tmp_path}" in summary.reason


def test_no_summary_yet_is_none(tmp_path: Path) -> None:
    assert read_summary(tmp_path / "summary.json") is None
